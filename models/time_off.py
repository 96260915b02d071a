"""Teachers' time off (issue 15, item 2): the table and the lookups the lower layers need.

A row says a teacher is away from `starts_on` to `ends_on` (both included), optionally with a
substitute who teaches their lessons on those dates. Who taught a lesson is recorded on the
lesson itself (`attendance.taught_by_id`, `makeup.taught_by_id`; empty = the slot's teacher),
so payroll reads one record of what happened.

The operations (add, list, remove: cancelling or covering the lessons) are in
`models.substitutes`, above attendance; this module answers "who teaches this teacher's
lessons on that date" for attendance, make-up booking and the read models. It also notes, in
any unit of work, the enrollments that start taking place (`note_taught`, a flush hook), for the
time off recorded before them (`models.time_off_bookings`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel, col, select

from models.base import utc_column, utcnow
from models.db import after_commit
from models.enrollment import ACTIVE, PAST_DUE, TAUGHT_STATUSES, Enrollment
from models.people import Teacher
from models.scheduling import Timeslot, slot_dates


class TimeOff(SQLModel, table=True):
    """A teacher's absence over a date range, with or without a substitute."""

    __tablename__ = "time_off"
    __table_args__ = (
        sa.CheckConstraint("ends_on >= starts_on", name="dates_ordered"),
        sa.CheckConstraint("substitute_id IS NULL OR substitute_id <> teacher_id", name="substitute_not_self"),
    )

    id: int | None = Field(default=None, primary_key=True)
    teacher_id: int = Field(foreign_key="teacher.id", index=True, ondelete="RESTRICT")
    starts_on: date
    ends_on: date
    substitute_id: int | None = Field(default=None, foreign_key="teacher.id", index=True, ondelete="RESTRICT")
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


# Lookups (the lower layers' view: who teaches a slot on a date) ------------------------


def overlapping(session: Session, first: date, last: date, *, teacher_id: int | None = None) -> list[TimeOff]:
    """Time off overlapping `first`..`last` (both included), of one teacher or of all, by start."""
    statement = select(TimeOff).where(TimeOff.starts_on <= last, TimeOff.ends_on >= first)
    if teacher_id is not None:
        statement = statement.where(TimeOff.teacher_id == teacher_id)
    return list(session.exec(statement.order_by(col(TimeOff.starts_on), col(TimeOff.id))).all())


def substitute_on(session: Session, teacher_id: int, day: date) -> int | None:
    """The substitute who teaches `teacher_id`'s lessons on `day`; None when the teacher is not
    away then, or away without one (their lessons are cancelled)."""
    return session.exec(
        select(TimeOff.substitute_id).where(TimeOff.teacher_id == teacher_id, TimeOff.starts_on <= day, TimeOff.ends_on >= day)
    ).first()


class Covers:
    """The substitutes of a range of dates, asked per teacher and day (one query for the range)."""

    def __init__(self, rows: list[tuple[int, date, date, int, str]]):
        self._by_teacher: dict[int, list[tuple[date, date, int, str]]] = {}
        for teacher_id, starts_on, ends_on, substitute_id, name in rows:
            self._by_teacher.setdefault(teacher_id, []).append((starts_on, ends_on, substitute_id, name))

    def __bool__(self) -> bool:
        return bool(self._by_teacher)

    def name(self, teacher_id: int, day: date) -> str | None:
        """The name of the substitute teaching `teacher_id`'s lessons on `day`, or None."""
        for starts_on, ends_on, _, name in self._by_teacher.get(teacher_id, ()):
            if starts_on <= day <= ends_on:
                return name
        return None


def covers_between(session: Session, first: date, last: date) -> Covers:
    """Every substitution (time off with a substitute) overlapping `first`..`last`."""
    rows = session.execute(
        sa.select(
            col(TimeOff.teacher_id), col(TimeOff.starts_on), col(TimeOff.ends_on), col(TimeOff.substitute_id), col(Teacher.name)
        )
        .join(Teacher, col(Teacher.id) == TimeOff.substitute_id)
        .where(col(TimeOff.starts_on) <= last, col(TimeOff.ends_on) >= first)
    ).all()
    return Covers([tuple(row) for row in rows])


def unavailable_slot_dates(session: Session, slots: list[Timeslot], first: date, last: date) -> set[tuple[int, date]]:
    """The (slot, date) pairs from `first` to `last` no make-up may take because of time off: every
    date its teacher is away, and the times its teacher covers for an absent one (the absent
    teacher's slot times on that date: the substitute is busy then)."""
    teacher_ids = {slot.teacher_id for slot in slots}
    if not teacher_ids:
        return set()
    rows = overlapping(session, first, last)
    taken: set[tuple[int, date]] = set()
    for row in rows:
        start, end = max(first, row.starts_on), min(last, row.ends_on)
        if row.teacher_id in teacher_ids:
            for slot in slots:
                if slot.teacher_id == row.teacher_id:
                    taken.update((slot.id, day) for day in slot_dates(slot.weekday, start, end))
        if row.substitute_id in teacher_ids:
            covered = set(
                session.exec(select(Timeslot.weekday, Timeslot.start_minute).where(Timeslot.teacher_id == row.teacher_id)).all()
            )
            for slot in slots:
                if slot.teacher_id == row.substitute_id and (slot.weekday, slot.start_minute) in covered:
                    taken.update((slot.id, day) for day in slot_dates(slot.weekday, start, end))
    return taken


# Enrollments that start taking place (their teacher's time off may cover some lessons) --------

NOTED_KEY = "time_off_noted_enrollments"
_booking_dispatcher: Callable[[int], object] | None = None


def set_booking_dispatcher(dispatcher: Callable[[int], object] | None) -> None:
    """Install what applies time off to enrollment `id` after commit (None: nothing); see
    `models.time_off_bookings`."""
    global _booking_dispatcher
    _booking_dispatcher = dispatcher


def note_taught(session: Session | OrmSession, enrollment: Enrollment) -> None:
    """If `enrollment` is one whose lessons take place, hand it to the dispatcher after commit
    (once a unit of work). The booking door calls it for the rows it inserts itself; the flush
    hook below for every enrollment moved into a taught status."""
    dispatcher = _booking_dispatcher
    if dispatcher is None or enrollment.id is None or enrollment.status not in TAUGHT_STATUSES:
        return
    noted: set[int] = session.info.setdefault(NOTED_KEY, set())
    if enrollment.id not in noted:
        noted.add(enrollment.id)
        after_commit(session, functools.partial(dispatcher, enrollment.id))  # type: ignore[arg-type]


def _starts_teaching(obj: object) -> bool:
    """A flushed enrollment new as active (or past due), or moved there from a status whose
    lessons do not take place (a hold paid, a pause resumed). Cancelled is taught too, but only
    ever a way out: a hold cancelled never had a lesson."""
    if not isinstance(obj, Enrollment) or obj.status not in (ACTIVE, PAST_DUE):
        return False
    status = sa.inspect(obj).attrs.status.history
    return bool(status.added) and (not status.deleted or status.deleted[0] not in TAUGHT_STATUSES)


def _note_taught(session: OrmSession, _context) -> None:
    for obj in [*session.new, *session.dirty]:
        if _starts_teaching(obj):
            note_taught(session, obj)


def _forget_noted(session: OrmSession, *_args) -> None:
    session.info.pop(NOTED_KEY, None)


event.listen(OrmSession, "after_flush", _note_taught)
event.listen(OrmSession, "after_commit", _forget_noted)
event.listen(OrmSession, "after_rollback", _forget_noted)
