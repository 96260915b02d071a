"""What a parent browses before booking: instruments, active teachers, open timeslots.

Every listing runs a constant number of queries whatever the page size (a benchmark
counts them): one for the page, one for the teachers' instruments, one for closures. A slot
carries its room and location (`models.locations`), read in the page's statement; the
`location` filter is in that statement too (an unknown location costs one more query, only
when the page is empty: it is NotFound, not an empty list).
Pages are keyset-paginated on `id` (`after_id` = the last id of the previous page), so
a page never shifts when rows are added before it.

A slot is held for dates (`models.enrollment`): it is available when no live enrollment holds
it forever, from the first lesson after the last one's end (and after any booked make-up on it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from models.attendance import TAKEN_STATUSES, MakeUp
from models.base import MAX_ID, utcnow
from models.clock import next_occurrence
from models.enrollment import LIVE_STATUSES, Enrollment
from models.errors import NotFound
from models.locations import Location, Room
from models.people import Instrument, Teacher, TeacherInstrument
from models.scheduling import SemesterClosure, Timeslot

# The hot listing runs Core statements on the tables, built once per filter shape with
# bound parameters: building a statement (~0.3 ms) and the ORM execution layer cost more
# than PostgreSQL takes to answer the page.
_INSTRUMENTS_OF = (
    sa.select(TeacherInstrument.__table__.c.teacher_id, Instrument.__table__.c.name)
    .select_from(
        TeacherInstrument.__table__.join(
            Instrument.__table__, Instrument.__table__.c.id == TeacherInstrument.__table__.c.instrument_id
        )
    )
    .where(TeacherInstrument.__table__.c.teacher_id.in_(sa.bindparam("teacher_ids", expanding=True)))
    .order_by(Instrument.__table__.c.name)
)
_CLOSURES = sa.select(SemesterClosure.__table__.c.closed_on)
_FOREVER = sa.literal(date.max, sa.Date)  # the end of a live enrollment without one, in the listing's statement


@functools.lru_cache(maxsize=64)
def _listing_statement(
    after: bool, teacher: bool, weekday: bool, instrument: bool, available: bool | None, location: str | None = None
):
    """The page statement of `list_timeslots` for one combination of filters.

    Each slot's holds: the last end of its live enrollments (`_FOREVER` for one without an
    end) from a grouped LEFT JOIN, which the planner merges with the slots in id order over
    the (timeslot_id) index, stopping at the page (a correlated aggregate per row chose the
    exclusion constraint's GiST index, 7x slower; a NOT EXISTS in the select list became a
    hashed subplan reading every live enrollment); the last booked make-up on it, per row.
    Its room and location by outer joins (few rows); `location` is `"id"` or `"name"`: how
    the filter names it.
    """
    slot, teacher_t, live, makeup = Timeslot.__table__, Teacher.__table__, Enrollment.__table__, MakeUp.__table__
    room, place = Room.__table__, Location.__table__
    held = sa.select(live.c.timeslot_id, sa.func.max(sa.func.coalesce(live.c.end_date, _FOREVER)).label("until")).where(
        live.c.status.in_(LIVE_STATUSES)
    )
    if after:  # the planner carries no inequality into a grouped subquery: later pages start there too
        held = held.where(live.c.timeslot_id > sa.bindparam("after_id", type_=sa.Integer))
    held = held.group_by(live.c.timeslot_id).subquery("held")
    last_makeup = (
        sa.select(sa.func.max(makeup.c.lesson_date))
        .where(makeup.c.timeslot_id == slot.c.id, makeup.c.status.in_(TAKEN_STATUSES))
        .scalar_subquery()
    )
    statement = (
        sa.select(
            slot.c.id,
            slot.c.teacher_id,
            slot.c.weekday,
            slot.c.start_minute,
            teacher_t.c.name,
            held.c.until.label("held_until"),
            last_makeup.label("last_makeup"),
            room.c.name,
            place.c.name,
        )
        .select_from(
            slot.join(teacher_t, teacher_t.c.id == slot.c.teacher_id)
            .outerjoin(held, held.c.timeslot_id == slot.c.id)
            .outerjoin(room, room.c.id == slot.c.room_id)
            .outerjoin(place, place.c.id == room.c.location_id)
        )
        .where(slot.c.active.is_(True), teacher_t.c.active.is_(True))
        .order_by(slot.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    if after:
        statement = statement.where(slot.c.id > sa.bindparam("after_id", type_=sa.Integer))
    if teacher:
        statement = statement.where(slot.c.teacher_id == sa.bindparam("teacher_id", type_=sa.Integer))
    if weekday:
        statement = statement.where(slot.c.weekday == sa.bindparam("weekday", type_=sa.Integer))
    if location == "id":
        statement = statement.where(room.c.location_id == sa.bindparam("location_id", type_=sa.Integer))
    elif location == "name":
        statement = statement.where(sa.func.lower(place.c.name) == sa.bindparam("location_name", type_=sa.String))
    if instrument:
        taught, named = TeacherInstrument.__table__, Instrument.__table__
        statement = statement.where(
            sa.exists().where(
                taught.c.teacher_id == slot.c.teacher_id,
                taught.c.instrument_id == named.c.id,
                named.c.name == sa.bindparam("instrument", type_=sa.String),
            )
        )
    held_forever = sa.func.coalesce(held.c.until, sa.literal(date.min, sa.Date)) == _FOREVER
    if available is True:
        statement = statement.where(~held_forever)
    elif available is False:
        statement = statement.where(held_forever)
    return statement


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
    # The first lesson a booking made now would start on (None: held forever).
    available_from: date | None = None
    room: str | None = None  # its room and the room's location (None: not said)
    location: str | None = None


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
    for teacher_id, name in session.execute(_INSTRUMENTS_OF, {"teacher_ids": teacher_ids}):
        by_teacher[teacher_id].append(name)
    return by_teacher


def list_teachers(
    session: Session, *, instrument: str | None = None, after_id: int | None = None, limit: int = 50
) -> list[TeacherListing]:
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
    session: Session,
    *,
    tz: ZoneInfo,
    teacher_id: int | None = None,
    instrument: str | None = None,
    weekday: int | None = None,
    available: bool | None = None,
    after_id: int | None = None,
    limit: int = 50,
    now: datetime | None = None,
    location: str | None = None,
) -> list[SlotListing]:
    """Active slots of active teachers with availability and the next lesson start.

    `available` is true when no live enrollment holds the slot forever (it is bookable from
    some date: `available_from`, the first lesson after the live enrollments' last end and
    the last booked make-up on it, closures skipped); `available=True`/`False` filters on it
    in SQL, so pages stay full. `next_occurrence` skips closures and is placed in `tz` (right
    across DST changes). `location` (an id, or a name in any case) keeps the slots of its
    rooms; NotFound when there is no such location.
    """
    now = now or utcnow()
    location_id, location_name = _location_filter(location)
    params = {
        "limit": limit + 1,
        "after_id": after_id,
        "teacher_id": teacher_id,
        "weekday": weekday,
        "instrument": instrument.strip().lower() if instrument else None,
        "location_id": location_id,
        "location_name": location_name,
    }
    location_kind = "id" if location_id is not None else "name" if location_name is not None else None
    statement = _listing_statement(
        after_id is not None, teacher_id is not None, weekday is not None, bool(instrument), available, location_kind
    )
    rows = session.execute(statement, {key: value for key, value in params.items() if value is not None}).all()
    if not rows:
        if location is not None and not _location_exists(session, location_id, location_name):
            raise NotFound(f"no location {location!r}", type="unknown-location", field="location")
        return []
    instruments = _instruments_by_teacher(session, sorted({row[1] for row in rows}))
    closures = set(session.execute(_CLOSURES).scalars())
    starts: dict[tuple[int, int, date | None], datetime | None] = {}  # (weekday, minute, taken until) → start

    def next_start(weekday: int, minute: int, taken_until: date | None = None) -> datetime | None:
        key = (weekday, minute, taken_until)
        if key not in starts:
            after = max(now, datetime.combine(taken_until, time.max, tzinfo=tz)) if taken_until else now
            starts[key] = next_occurrence(weekday, minute, after=after, tz=tz, closures=closures)
        return starts[key]

    listings = []
    for slot_id, teacher, day, minute, teacher_name, held_until, last_makeup, room_name, location_name in rows:
        available = held_until != date.max
        taken_until = max((taken for taken in (held_until, last_makeup) if taken is not None), default=None)
        free_start = next_start(day, minute, taken_until) if available else None
        listings.append(
            SlotListing(
                id=slot_id,
                weekday=day,
                start_minute=minute,
                teacher_id=teacher,
                teacher_name=teacher_name,
                instruments=instruments[teacher],
                available=available,
                next_occurrence=next_start(day, minute),
                available_from=free_start.date() if free_start else None,
                room=room_name,
                location=location_name,
            )
        )
    return listings


def _location_filter(location: str | None) -> tuple[int | None, str | None]:
    """(id, lower-case name) of the `location` filter: digits are an id, anything else a name."""
    if location is None:
        return None, None
    text = location.strip()
    if text.isascii() and text.isdigit():
        return min(int(text), MAX_ID), None
    return None, " ".join(text.split()).lower()


def _location_exists(session: Session, location_id: int | None, location_name: str | None) -> bool:
    place = Location.__table__
    where = place.c.id == location_id if location_id is not None else sa.func.lower(place.c.name) == location_name
    return session.execute(sa.select(place.c.id).where(where).limit(1)).first() is not None
