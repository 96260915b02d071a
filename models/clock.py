"""Wall-clock helpers of the weekly schedule: pure functions, no tables, no SQLModel.

Kept apart from `models.scheduling` (which re-exports them) so read paths such as
`studioctl dashboard today` can format lessons without importing the ORM table classes.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def format_minute(minute: int) -> str:
    """Minutes after midnight → `HH:MM`."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def occurrence_start(lesson_date: date, start_minute: int, tz: ZoneInfo) -> datetime:
    """The aware start of a lesson on `lesson_date` at the studio's wall-clock time."""
    return datetime.combine(lesson_date, time(start_minute // 60, start_minute % 60), tzinfo=tz)


def is_dst_change_week(lesson_date: date, start_minute: int, tz: ZoneInfo) -> bool:
    """True when this lesson's UTC offset differs from the same lesson a week earlier."""
    this = occurrence_start(lesson_date, start_minute, tz).utcoffset()
    previous = occurrence_start(lesson_date - timedelta(days=7), start_minute, tz).utcoffset()
    return this != previous
