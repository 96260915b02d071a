"""What a parent browses before booking: instruments, active teachers, open timeslots.

Every listing runs a constant number of queries whatever the page size (a benchmark
counts them): one for the page, one for the teachers' instruments, one for closures.
Pages are keyset-paginated on `id` (`after_id` = the last id of the previous page), so
a page never shifts when rows are added before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from models.base import utcnow
from models.enrollment import LIVE_STATUSES, Enrollment
from models.people import Instrument, Teacher, TeacherInstrument
from models.scheduling import SemesterClosure, Timeslot, occurrence_start


# The live enrollment of a slot, joined by `list_timeslots` (built once: an alias is ~20 column objects).
_LIVE = aliased(Enrollment, name="live")


@dataclass
class TeacherListing:
    """An active teacher and the instruments they teach."""

    teacher: Teacher
    instruments: list[str] = field(default_factory=list)


@dataclass
class SlotListing:
    """A bookable weekly slot as the parent sees it (plain values, no ORM object)."""

    id: int
    weekday: int
    start_minute: int
    teacher_id: int
    teacher_name: str
    instruments: list[str]
    available: bool
    next_occurrence: datetime | None


def list_instruments(session: Session, *, after_id: int | None = None, limit: int = 50) -> list[Instrument]:
    """Instruments by id, one page (`limit` + 1 rows are read so the caller knows if more follow)."""
    statement = select(Instrument).order_by(Instrument.id).limit(limit + 1)
    if after_id is not None:
        statement = statement.where(Instrument.id > after_id)
    return list(session.exec(statement).all())


def _instruments_by_teacher(session: Session, teacher_ids: list[int]) -> dict[int, list[str]]:
    by_teacher: dict[int, list[str]] = {teacher_id: [] for teacher_id in teacher_ids}
    if not teacher_ids:
        return by_teacher
    rows = session.exec(
        select(TeacherInstrument.teacher_id, Instrument.name)
        .join(Instrument, Instrument.id == TeacherInstrument.instrument_id)
        .where(TeacherInstrument.teacher_id.in_(teacher_ids))
        .order_by(Instrument.name)
    ).all()
    for teacher_id, name in rows:
        by_teacher[teacher_id].append(name)
    return by_teacher


def list_teachers(session: Session, *, instrument: str | None = None, after_id: int | None = None,
                  limit: int = 50) -> list[TeacherListing]:
    """Active teachers with their instruments (optionally only those teaching `instrument`)."""
    statement = select(Teacher).where(Teacher.active.is_(True)).order_by(Teacher.id).limit(limit + 1)
    if after_id is not None:
        statement = statement.where(Teacher.id > after_id)
    if instrument:
        statement = statement.where(_teaches(Teacher.id, instrument))
    teachers = list(session.exec(statement).all())
    instruments = _instruments_by_teacher(session, [teacher.id for teacher in teachers])
    return [TeacherListing(teacher=teacher, instruments=instruments[teacher.id]) for teacher in teachers]


def _teaches(teacher_id_column, instrument: str):
    return sa.exists().where(
        TeacherInstrument.teacher_id == teacher_id_column,
        TeacherInstrument.instrument_id == Instrument.id,
        Instrument.name == instrument.strip().lower(),
    )


def list_timeslots(
    session: Session, *, tz: ZoneInfo, teacher_id: int | None = None, instrument: str | None = None,
    weekday: int | None = None, available: bool | None = None, after_id: int | None = None, limit: int = 50,
    now: datetime | None = None,
) -> list[SlotListing]:
    """Active slots of active teachers with availability and the next lesson start.

    `available` is true when no live (provisional, active, past_due) enrollment holds the
    slot; `available=True`/`False` filters on it in SQL, so pages stay full.
    `next_occurrence` skips closures and is placed in `tz` (right across DST changes).
    """
    now = now or utcnow()
    # The live enrollment of each slot through a LEFT JOIN (the partial unique index allows
    # at most one, so rows never repeat): the planner walks both indexes in id order and
    # stops at the page. A NOT EXISTS in the select list became a hashed subplan reading
    # every live enrollment on each request.
    live = _LIVE
    statement = (
        select(Timeslot.id, Timeslot.teacher_id, Timeslot.weekday, Timeslot.start_minute, Teacher.name,
               live.timeslot_id.is_(None).label("available"))
        .join(Teacher, Teacher.id == Timeslot.teacher_id)
        .outerjoin(live, sa.and_(live.timeslot_id == Timeslot.id, live.status.in_(LIVE_STATUSES)))
        .where(Timeslot.active.is_(True), Teacher.active.is_(True))
        .order_by(Timeslot.id)
        .limit(limit + 1)
    )
    if after_id is not None:
        statement = statement.where(Timeslot.id > after_id)
    if teacher_id is not None:
        statement = statement.where(Timeslot.teacher_id == teacher_id)
    if weekday is not None:
        statement = statement.where(Timeslot.weekday == weekday)
    if instrument:
        statement = statement.where(_teaches(Timeslot.teacher_id, instrument))
    if available is True:
        statement = statement.where(live.timeslot_id.is_(None))
    elif available is False:
        statement = statement.where(live.timeslot_id.is_not(None))
    rows = session.exec(statement).all()
    if not rows:
        return []
    instruments = _instruments_by_teacher(session, sorted({row[1] for row in rows}))
    closures = set(session.exec(select(SemesterClosure.closed_on)).all())
    local_day = now.astimezone(tz).date()
    starts: dict[tuple[int, int], datetime | None] = {}  # (weekday, start minute) → next start

    def next_start(weekday: int, minute: int) -> datetime | None:
        key = (weekday, minute)
        if key not in starts:
            starts[key] = _next_start(weekday, minute, after=now, local_day=local_day, tz=tz, closures=closures)
        return starts[key]

    return [
        SlotListing(
            id=slot_id, weekday=day, start_minute=minute, teacher_id=teacher, teacher_name=teacher_name,
            instruments=instruments[teacher], available=bool(is_available), next_occurrence=next_start(day, minute),
        )
        for slot_id, teacher, day, minute, teacher_name, is_available in rows
    ]


def _next_start(weekday: int, minute: int, *, after: datetime, local_day, tz: ZoneInfo,
                closures: set) -> datetime | None:
    """`models.scheduling.next_occurrence` for a (weekday, start minute): the first start
    after `after`, closures skipped, up to 60 weeks ahead; it steps a week at a time."""
    day = local_day + timedelta(days=(weekday - local_day.weekday()) % 7)
    for _ in range(60):
        if day not in closures:
            start = occurrence_start(day, minute, tz)
            if start > after:
                return start
        day += timedelta(days=7)
    return None
