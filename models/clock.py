"""The studio's clock and the weekly schedule's wall-clock helpers: no tables, no SQLModel.

Kept apart from `models.scheduling` so read paths such as `studioctl dashboard today` can
place and label lessons without importing the ORM table classes. Every "today" of the domain
is `studio_today()` (the date in STUDIO_TIMEZONE, whatever the server's zone), every
`Mon 16:00` is `slot_label()`, every "next lesson" is `next_occurrence()`.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from models.config import get_settings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead a weekly slot's next lesson is looked for (closures can stack up).
NEXT_OCCURRENCE_WEEKS = 60


def studio_today(now: datetime | None = None) -> date:
    """The date at the studio (STUDIO_TIMEZONE) at the instant `now`, by default this one."""
    return (now or datetime.now(UTC)).astimezone(get_settings().tz).date()


def format_minute(minute: int) -> str:
    """Minutes after midnight → `HH:MM`."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def weekday_label(weekday: int) -> str:
    """0–6 → `Mon`…`Sun`."""
    return WEEKDAYS[weekday].title()


def slot_label(weekday: int, start_minute: int) -> str:
    """A weekly slot as the admin and the emails name it: `Mon 16:00`."""
    return f"{weekday_label(weekday)} {format_minute(start_minute)}"


def occurrence_start(lesson_date: date, start_minute: int, tz: ZoneInfo) -> datetime:
    """The aware start of a lesson on `lesson_date` at the studio's wall-clock time."""
    return datetime.combine(lesson_date, time(start_minute // 60, start_minute % 60), tzinfo=tz)


def next_occurrence(
    weekday: int, start_minute: int, *, after: datetime, tz: ZoneInfo, closures: Container[date] = frozenset()
) -> datetime | None:
    """The first start of the weekly slot (weekday, start minute) later than `after`, closures
    skipped, placed in `tz` (right across DST changes); None when none falls in the next
    NEXT_OCCURRENCE_WEEKS weeks."""
    local_day = after.astimezone(tz).date()
    day = local_day + timedelta(days=(weekday - local_day.weekday()) % 7)
    for _ in range(NEXT_OCCURRENCE_WEEKS):
        if day not in closures:
            start = occurrence_start(day, start_minute, tz)
            if start > after:
                return start
        day += timedelta(days=7)
    return None


def is_dst_change_week(lesson_date: date, start_minute: int, tz: ZoneInfo) -> bool:
    """True when this lesson's UTC offset differs from the same lesson a week earlier."""
    this = occurrence_start(lesson_date, start_minute, tz).utcoffset()
    previous = occurrence_start(lesson_date - timedelta(days=7), start_minute, tz).utcoffset()
    return this != previous
