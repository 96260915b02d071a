"""The booking door: a provisional hold for a family (`hold_slot`, the parent API) or the
admin's assignment (`assign_enrollment`, the CLI and the demo seed) — one rule, two doors.

Everything that needs no lock is read in one prepared statement; the slot's row lock (FOR
UPDATE on PostgreSQL; SQLite's unit of work began IMMEDIATE) is held only for what must be
read under it and the insert, which the one-live-enrollment-per-slot partial unique index
guards last (INSERT ... ON CONFLICT DO NOTHING). A booked make-up owns its slot-date, so this
module sits above `models.attendance`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, func, select

from models.attendance import TAKEN_STATUSES, MakeUp
from models.audit import record_audit, snapshot
from models.base import utcnow
from models.billing import get_plan
from models.clock import occurrence_start, studio_today, weekday_label
from models.config import get_settings
from models.db import is_postgres, lock_row
from models.enrollment import ACTIVE, HOLD_STATUSES, LIVE_SQL, LIVE_STATUSES, PROVISIONAL, Enrollment
from models.errors import Invalid, NotFound, SlotTaken, TooManyHolds
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument, get_instrument, get_student
from models.scheduling import Semester, SemesterClosure, Timeslot, all_closures, closures_of, slot_dates

BOOKING_HORIZON = timedelta(days=731)  # how far ahead an enrollment may start


def _first_lesson_on_or_after(slot: Timeslot, day: date, closures: set[date], semester: Semester | None) -> date:
    last = semester.ends_on if semester else day + timedelta(days=7 * 60)
    dates = slot_dates(slot.weekday, day, last, closures)
    if not dates:
        raise Invalid("no lesson date left for this slot in the semester", field="start_date")
    return dates[0]


def _new_enrollment(
    session: Session,
    *,
    student: Student,
    timeslot_id: int,
    instrument: str,
    plan: str | int | None,
    start_date: date | None,
    status: str,
    offline: bool,
    now: datetime,
    actor: str,
) -> Enrollment:
    settings = get_settings()
    # Everything that needs no lock is read first, the checks in the order they always had:
    # the slot with its teacher, the instrument by name, whether the teacher teaches it and
    # whether a live enrollment already holds the slot (one statement), the plan, the
    # semester with its closures. The slot's row lock is then held only for what must be
    # read under it and the insert, so bookings racing for one slot queue for a short time.
    row = session.execute(_SLOT_FACTS, {"timeslot_id": timeslot_id, "instrument_name": instrument.strip().lower()}).first()
    if row is None:  # no such slot: the errors keep their order (instrument, plan, then slot)
        get_instrument(session, instrument)
        if plan is not None:
            get_plan(session, plan)
        raise NotFound(f"no timeslot {timeslot_id}", field="timeslot_id")
    slot, teacher_name, teacher_active, instrument_id, instrument_found, teaches_instrument, taken = row
    if instrument_id is None:
        raise NotFound(f"no instrument named {instrument!r}", field="instrument")
    plan_row = get_plan(session, plan) if plan is not None else None
    if plan_row is not None and not plan_row.active:
        raise Invalid(f"plan {plan_row.id} is no longer offered", field="plan")
    if not slot.active or not teacher_active:
        raise Invalid(f"timeslot {slot.id} is not open for booking", field="timeslot_id")
    if not teaches_instrument:
        raise Invalid(f"{teacher_name} does not teach {instrument_found}", field="instrument")
    today = studio_today(now)
    if start_date is not None:
        if start_date < today:
            raise Invalid(f"start date {start_date} is in the past", field="start_date")
        if start_date > today + BOOKING_HORIZON:
            raise Invalid(f"start date {start_date} is more than {BOOKING_HORIZON.days} days ahead", field="start_date")
        if start_date.weekday() != slot.weekday:
            raise Invalid(f"{start_date} is not a {weekday_label(slot.weekday)}", field="start_date")
        if start_date == today and occurrence_start(today, slot.start_minute, settings.tz) <= now:
            raise Invalid(f"today's {slot.label} lesson has already started; start next week", field="start_date")
    if taken:  # a live enrollment was committed before this request: no need to queue for the lock
        raise SlotTaken(f"timeslot {slot.id} ({slot.label}) is taken")
    semester, closures = _semester_with_closures(session, start_date or today)
    if semester and start_date and start_date > semester.ends_on:
        raise Invalid(f"{start_date} is after the semester ends", field="start_date")
    # Without a start date the first lesson is the next one that has not started yet.
    earliest = today if occurrence_start(today, slot.start_minute, settings.tz) > now else today + timedelta(days=1)
    first_day = max(start_date or earliest, semester.starts_on if semester else earliest)
    first_lesson = _first_lesson_on_or_after(slot, first_day, closures, semester)
    if plan_row is not None and plan_row.frequency == "semester" and semester is None:
        raise Invalid("a semester plan needs a semester", field="plan")
    # The slot row lock serialises bookings of one slot (SQLite: the unit of work began
    # IMMEDIATE); the slot is re-read under it (an admin may have closed it meanwhile).
    slot = lock_row(session, Timeslot, slot.id)
    if slot is None or not slot.active:
        raise Invalid(f"timeslot {timeslot_id} is not open for booking", field="timeslot_id")
    # A new statement after the lock, so its snapshot holds whatever the previous holder of
    # the lock committed: a live enrollment of the slot, and the last booked make-up on it
    # (a booked make-up owns its slot-date: the weekly lessons start after it).
    live_id, last_makeup = session.execute(_LIVE_AND_LAST_MAKEUP, {"timeslot_id": slot.id}).one()
    if live_id is not None:
        raise SlotTaken(f"timeslot {slot.id} ({slot.label}) is taken")
    if last_makeup is not None and last_makeup >= first_lesson:
        first_lesson = _first_lesson_on_or_after(slot, last_makeup + timedelta(days=1), closures, semester)
    enrollment = Enrollment(
        student_id=student.id,
        timeslot_id=slot.id,
        instrument_id=instrument_id,
        plan_id=plan_row.id if plan_row else None,
        semester_id=semester.id if semester else None,
        status=status,
        offline=offline,
        start_date=first_lesson,
        provisional_expires_at=now + timedelta(minutes=settings.PROVISIONAL_HOLD_MINUTES) if status == PROVISIONAL else None,
        created_at=now,
        updated_at=now,
    )
    # The partial unique index is the last line: the insert does nothing on a live
    # enrollment of the slot, and no row back means the slot is taken.
    if not _insert_unless_slot_live(session, enrollment):
        raise SlotTaken(f"timeslot {slot.id} ({slot.label}) is taken")
    record_audit(
        session,
        actor=actor,
        action=f"enrollment.{'assign' if offline else 'hold'}",
        entity=enrollment,
        after=snapshot(enrollment),
    )
    return enrollment


# A student with their family's holds counted (run under the payee's lock): provisional ones and
# those waiting for a 3-D Secure check, which hold a slot for a day (else a card that always
# asks would let a family hoard slots past the cap).
_STUDENT_AND_HOLDS = select(
    Student,
    select(func.count(Enrollment.id))
    .join(Student, Student.id == Enrollment.student_id)
    .where(Student.payee_id == sa.bindparam("payee_id", type_=sa.Integer), Enrollment.status.in_(HOLD_STATUSES))
    .scalar_subquery(),
).where(Student.id == sa.bindparam("student_id", type_=sa.Integer))


# The slot with its teacher, the instrument named `:instrument_name`, whether the teacher
# teaches it and whether a live enrollment holds the slot; read without a lock. Built once:
# statement building costs more than PostgreSQL's answer.
_SLOT_FACTS = (
    select(
        Timeslot,
        Teacher.name,
        Teacher.active,
        Instrument.id,
        Instrument.name,
        sa.exists().where(TeacherInstrument.teacher_id == Timeslot.teacher_id, TeacherInstrument.instrument_id == Instrument.id),
        sa.exists().where(Enrollment.timeslot_id == Timeslot.id, Enrollment.status.in_(LIVE_STATUSES)),
    )
    .join(Teacher, Teacher.id == Timeslot.teacher_id)
    .outerjoin(Instrument, Instrument.name == sa.bindparam("instrument_name", type_=sa.String))
    .where(Timeslot.id == sa.bindparam("timeslot_id", type_=sa.Integer))
)


# A live enrollment of slot `:timeslot_id` (its id or NULL) and the latest date of a booked or
# used make-up on it, in one statement (run under the slot's lock).
_LIVE_AND_LAST_MAKEUP = select(
    select(Enrollment.id)
    .where(Enrollment.timeslot_id == sa.bindparam("timeslot_id", type_=sa.Integer), Enrollment.status.in_(LIVE_STATUSES))
    .limit(1)
    .scalar_subquery(),
    select(func.max(MakeUp.lesson_date))
    .where(MakeUp.timeslot_id == sa.bindparam("timeslot_id", type_=sa.Integer), MakeUp.status.in_(TAKEN_STATUSES))
    .scalar_subquery(),
)


def _semester_with_closures(session: Session, day: date) -> tuple[Semester | None, set[date]]:
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


def _insert_unless_slot_live(session: Session, enrollment: Enrollment) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on the live-slot partial unique index (PostgreSQL and
    SQLite), RETURNING the id. True when inserted: `enrollment` then is a persistent row of
    the session (no re-read); False when a live enrollment holds the slot."""
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    table = Enrollment.__table__
    values = {column.name: getattr(enrollment, column.name) for column in table.columns if column.name != "id"}
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["timeslot_id"], index_where=sa.text(LIVE_SQL))
        .returning(table.c.id)
    )
    new_id = session.execute(statement).scalar()
    if new_id is None:
        return False
    enrollment.id = new_id
    make_transient_to_detached(enrollment)
    session.add(enrollment)
    return True


def hold_slot(
    session: Session,
    *,
    payee: Payee,
    student_id: int,
    timeslot_id: int,
    instrument: str,
    plan: str | int,
    start_date: date | None = None,
    actor: str,
    now: datetime | None = None,
    payee_locked: bool = False,
) -> Enrollment:
    """Put a provisional hold on a slot for one of `payee`'s students.

    Checks ownership (another family's student is NotFound), the slot (active, teacher
    teaches the instrument), the hold cap, then inserts the provisional enrollment under
    the slot's row lock. A taken slot raises SlotTaken. The caller enqueues the booking
    task after commit.
    """
    now = now or utcnow()
    settings = get_settings()
    # The payee row lock serialises one family's holds (the cap); `payee_locked`: the caller
    # read `payee` with `payee_for_user(..., lock=True)` in this unit of work.
    locked_payee = payee if payee_locked else lock_row(session, Payee, payee.id)
    found = session.execute(_STUDENT_AND_HOLDS, {"student_id": student_id, "payee_id": locked_payee.id}).first()
    student, holds = found if found is not None else (None, 0)
    if student is None or student.archived_at is not None or student.payee_id != locked_payee.id:
        raise NotFound(f"no student {student_id}", field="student_id")  # as get_student: never Forbidden
    if holds >= settings.MAX_HOLDS_PER_PAYEE:
        raise TooManyHolds(f"you already hold {holds} provisional bookings (the limit is {settings.MAX_HOLDS_PER_PAYEE})")
    return _new_enrollment(
        session,
        student=student,
        timeslot_id=timeslot_id,
        instrument=instrument,
        plan=plan,
        start_date=start_date,
        status=PROVISIONAL,
        offline=False,
        now=now,
        actor=actor,
    )


def assign_enrollment(
    session: Session,
    *,
    student_id: int,
    timeslot_id: int,
    instrument: str,
    plan: str | int | None,
    start_date: date | None = None,
    offline: bool = False,
    actor: str,
    now: datetime | None = None,
) -> Enrollment:
    """The admin's door: `offline` (paid outside Stripe) is active at once, else a provisional hold."""
    now = now or utcnow()
    student = get_student(session, student_id)
    if not offline and plan is None:
        raise Invalid("a plan is needed unless the enrollment is --offline", field="plan")
    return _new_enrollment(
        session,
        student=student,
        timeslot_id=timeslot_id,
        instrument=instrument,
        plan=plan,
        start_date=start_date,
        status=ACTIVE if offline else PROVISIONAL,
        offline=offline,
        now=now,
        actor=actor,
    )
