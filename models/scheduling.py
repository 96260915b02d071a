"""Weekly timeslots, semesters with closures, and the lesson occurrences derived from them.

A timeslot is 30 minutes on a teacher's weekly grid, stored as minutes after midnight
(studio-local wall clock). Because every slot is 30 minutes long and starts on the half
hour, the unique key (teacher, weekday, start) alone guarantees no two slots of a teacher
overlap; a slot may name a room (`models.locations`), and for the same reason the unique index
on (room, weekday, start) of the slots that have one keeps a room from holding two at once. Occurrences are never stored: they are the slot's weekday dates in a range,
minus closures, each placed in STUDIO_TIMEZONE so a 16:00 lesson stays at 16:00 across DST
(`models.clock`). Adding a semester and closing a day live in `models.terms`: closing a day
reads the attendance marked and the make-ups booked on it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit, snapshot
from models.base import utc_column, utcnow
from models.clock import WEEKDAYS, format_minute, slot_label
from models.errors import Conflict, Invalid, NotFound
from models.locations import Room, place_of
from models.people import Teacher

SLOT_MINUTES = 30


class Timeslot(SQLModel, table=True):
    """A teacher's weekly 30-minute slot (weekday 0 = Monday)."""

    __table_args__ = (
        sa.UniqueConstraint("teacher_id", "weekday", "start_minute"),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        sa.CheckConstraint("start_minute BETWEEN 0 AND 1410 AND start_minute % 30 = 0", name="start_half_hour"),
        sa.Index(
            "uq_timeslot_room_weekday_start",
            "room_id",
            "weekday",
            "start_minute",
            unique=True,
            postgresql_where=sa.text("room_id IS NOT NULL"),
            sqlite_where=sa.text("room_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    teacher_id: int = Field(foreign_key="teacher.id", index=True, ondelete="RESTRICT")
    weekday: int
    start_minute: int
    # Where its lessons are (issue 15); empty = not said.
    room_id: int | None = Field(default=None, foreign_key="room.id", ondelete="RESTRICT")
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))

    @property
    def label(self) -> str:
        """`Mon 15:30` (`models.clock.slot_label`)."""
        return slot_label(self.weekday, self.start_minute)


class Semester(SQLModel, table=True):
    """A term: lessons run from `starts_on` to `ends_on`; make-ups inside the make-up window."""

    __table_args__ = (
        sa.CheckConstraint("ends_on >= starts_on", name="dates_ordered"),
        sa.CheckConstraint("makeup_ends_on >= makeup_starts_on", name="makeup_dates_ordered"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, sa_column_kwargs={"unique": True})
    starts_on: date
    ends_on: date
    makeup_starts_on: date
    makeup_ends_on: date
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class SemesterClosure(SQLModel, table=True):
    """A date without lessons (holiday); not billed, not an occurrence."""

    __tablename__ = "semester_closure"
    __table_args__ = (sa.UniqueConstraint("semester_id", "closed_on"),)

    id: int | None = Field(default=None, primary_key=True)
    semester_id: int = Field(foreign_key="semester.id", index=True, ondelete="CASCADE")
    closed_on: date
    reason: str | None = Field(default=None, max_length=120)


# Parsing -------------------------------------------------------------------------------


def parse_weekday(value: str | int) -> int:
    """`mon`…`sun`, `monday`, or 0–6 → 0–6; Invalid otherwise."""
    text = str(value).strip().lower()
    if text.isdigit() and 0 <= int(text) <= 6:
        return int(text)
    if text in WEEKDAYS or text in _FULL_DAYS:
        return WEEKDAYS.index(text[:3])
    raise Invalid(f"{value!r} is not a weekday (mon…sun or 0–6)", field="weekday")


_FULL_DAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def parse_hhmm(value: str) -> int:
    """`HH:MM` → minutes after midnight; Invalid when malformed or not on the half hour."""
    try:
        parsed = datetime.strptime(value.strip(), "%H:%M")
    except ValueError:
        raise Invalid(f"{value!r} is not a time (HH:MM)", field="time") from None
    minute = parsed.hour * 60 + parsed.minute
    if minute % SLOT_MINUTES:
        raise Invalid(f"{value} is not on the half hour (slots start at :00 or :30)", field="time")
    return minute


# Occurrences ---------------------------------------------------------------------------


def slot_dates(weekday: int, first: date, last: date, closures: set[date] | frozenset = frozenset()) -> list[date]:
    """Every date on `weekday` from `first` to `last` inclusive, minus `closures`."""
    if last < first:
        return []
    current = first + timedelta(days=(weekday - first.weekday()) % 7)
    dates = []
    while current <= last:
        if current not in closures:
            dates.append(current)
        current += timedelta(days=7)
    return dates


def closures_of(session: Session, semester_id: int) -> set[date]:
    """The closure dates of a semester."""
    return set(session.exec(select(SemesterClosure.closed_on).where(SemesterClosure.semester_id == semester_id)).all())


def all_closures(session: Session) -> set[date]:
    """Every closure date of every semester."""
    return set(session.exec(select(SemesterClosure.closed_on)).all())


def closures_by_semester(session: Session, first: date, last: date) -> dict[int, set[date]]:
    """The closure dates from `first` to `last`, by semester (one query): an enrollment of a
    semester skips its semester's, one without a semester skips them all."""
    by_semester: dict[int, set[date]] = {}
    rows = session.execute(
        sa.select(SemesterClosure.semester_id, SemesterClosure.closed_on).where(
            SemesterClosure.closed_on >= first, SemesterClosure.closed_on <= last
        )
    ).all()
    for semester_id, day in rows:
        by_semester.setdefault(semester_id, set()).add(day)
    return by_semester


def semester_on(session: Session, day: date) -> Semester | None:
    """The semester whose lesson dates include `day`, if any."""
    return session.exec(
        select(Semester).where(Semester.starts_on <= day, Semester.ends_on >= day).order_by(Semester.starts_on)
    ).first()


def current_or_next_semester(session: Session, day: date) -> Semester | None:
    """The semester running on `day`, else the next one to start."""
    return (
        semester_on(session, day)
        or session.exec(select(Semester).where(Semester.starts_on > day).order_by(Semester.starts_on)).first()
    )


def first_lesson_on_or_after(weekday: int, day: date, closures: set[date], semester: Semester | None) -> date:
    """The slot's first lesson date from `day` on (closures skipped), inside `semester` when
    there is one; Invalid when none is left."""
    last = semester.ends_on if semester else day + timedelta(days=7 * 60)
    dates = slot_dates(weekday, day, last, closures)
    if not dates:
        raise Invalid("no lesson date left for this slot in the semester", field="start_date")
    return dates[0]


def semester_with_closures(session: Session, day: date) -> tuple[Semester | None, set[date]]:
    """The semester of `day` and its closures in one statement (`semester_on` + `closures_of`);
    without one, the next semester to start and its closures, or every closure."""
    rows = session.exec(
        select(Semester, SemesterClosure.closed_on)
        .outerjoin(SemesterClosure, SemesterClosure.semester_id == Semester.id)
        .where(Semester.starts_on <= day, Semester.ends_on >= day)
        .order_by(Semester.starts_on, Semester.id)
    ).all()
    if rows:
        semester = rows[0][0]
        return semester, {closed_on for row, closed_on in rows if row.id == semester.id and closed_on is not None}
    semester = session.exec(select(Semester).where(Semester.starts_on > day).order_by(Semester.starts_on)).first()
    return semester, closures_of(session, semester.id) if semester else all_closures(session)


# Operations ----------------------------------------------------------------------------


def get_timeslot(session: Session, timeslot_id: int) -> Timeslot:
    """A timeslot by id, or NotFound."""
    slot = session.get(Timeslot, timeslot_id)
    if slot is None:
        raise NotFound(f"no timeslot {timeslot_id}", field="timeslot_id")
    return slot


def _room_clash(session: Session, room: Room, weekday: int, start_minute: int) -> None:
    """Conflict when `room` has a slot at that weekday and time (the unique index's rule, in words)."""
    clash = session.exec(
        select(Timeslot).where(Timeslot.room_id == room.id, Timeslot.weekday == weekday, Timeslot.start_minute == start_minute)
    ).first()
    if clash:
        place = place_of(session, room.id)
        teacher = session.get(Teacher, clash.teacher_id)
        raise Conflict(
            f"{place.label if place else room.name} is taken {clash.label} by slot {clash.id} ({teacher.name if teacher else '?'})"
        )


def add_timeslot(
    session: Session, *, teacher: Teacher, weekday: int, start_minute: int, actor: str, room: Room | None = None
) -> Timeslot:
    """Add one 30-minute slot, in `room` when given; Conflict when the teacher has it already (which
    is also any overlap), or the room is taken then."""
    if not 0 <= weekday <= 6:
        raise Invalid("weekday must be 0–6", field="weekday")
    if start_minute % SLOT_MINUTES or not 0 <= start_minute <= 24 * 60 - SLOT_MINUTES:
        raise Invalid("slots start on the half hour", field="time")
    clash = session.exec(
        select(Timeslot).where(
            Timeslot.teacher_id == teacher.id, Timeslot.weekday == weekday, Timeslot.start_minute == start_minute
        )
    ).first()
    if clash:
        raise Conflict(f"{teacher.name} already has a slot {clash.label} (id {clash.id})")
    if room is not None:
        _room_clash(session, room, weekday, start_minute)
    slot = Timeslot(teacher_id=teacher.id, weekday=weekday, start_minute=start_minute, room_id=room.id if room else None)
    session.add(slot)
    session.flush()
    record_audit(session, actor=actor, action="timeslot.add", entity=slot, after=snapshot(slot))
    return slot


def publish_timeslots(
    session: Session,
    *,
    teacher: Teacher,
    weekday: int,
    from_minute: int,
    to_minute: int,
    actor: str,
    room: Room | None = None,
    progress=None,
) -> tuple[list[Timeslot], list[Timeslot]]:
    """Make the 30-minute slots of [from, to) on a weekday (in `room` when given); return
    (created, skipped-existing). A room taken at one of the new times is a Conflict.

    `progress(step)` is called once per slot considered (the CLI's progress bar).
    """
    if to_minute <= from_minute:
        raise Invalid(f"the range {format_minute(from_minute)}–{format_minute(to_minute)} is empty or reversed", field="to")
    existing = {
        slot.start_minute: slot
        for slot in session.exec(select(Timeslot).where(Timeslot.teacher_id == teacher.id, Timeslot.weekday == weekday)).all()
    }
    created, skipped = [], []
    for minute in range(from_minute, to_minute, SLOT_MINUTES):
        if minute in existing:
            skipped.append(existing[minute])
        else:
            created.append(add_timeslot(session, teacher=teacher, weekday=weekday, start_minute=minute, actor=actor, room=room))
        if progress:
            progress(1)
    return created, skipped


def set_timeslot_room(session: Session, slot: Timeslot, *, room: Room | None, actor: str) -> Timeslot:
    """Put a slot in `room` (None: no room said); Conflict when the room is taken then. Its
    bookings keep running: only where the lessons are changes."""
    if room is not None and room.id != slot.room_id:
        _room_clash(session, room, slot.weekday, slot.start_minute)
    return change_audited(session, slot, actor=actor, action="timeslot.room", room_id=room.id if room else None)


def set_timeslot_active(session: Session, slot: Timeslot, *, active: bool, actor: str) -> Timeslot:
    """Activate or deactivate a slot (inactive slots take no new bookings; live ones keep running)."""
    action = "timeslot.activate" if active else "timeslot.deactivate"
    return change_audited(session, slot, actor=actor, action=action, active=active)


def get_semester(session: Session, semester_id: int) -> Semester:
    """A semester by id, or NotFound."""
    semester = session.get(Semester, semester_id)
    if semester is None:
        raise NotFound(f"no semester {semester_id}", field="semester")
    return semester
