"""The booking door: a provisional hold for a family (`hold_slot`, the parent API) or the
admin's assignment (`assign_enrollment`, the CLI and the demo seed) — one rule, two doors.

Everything that needs no lock is read in one prepared statement; the slot's row lock (FOR
UPDATE on PostgreSQL; SQLite's unit of work began IMMEDIATE) is held only for what must be
read under it and the insert, which the database's rule "no two live enrollments of a slot
overlap in dates" guards last (`models.enrollment.SLOT_DATES_CONSTRAINT`). A slot held until a
date is bookable from the lesson after it: without a start date a booking starts there. A
booked make-up owns its slot-date, so this module sits above `models.attendance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, func, select

from models.attendance import TAKEN_STATUSES, MakeUp
from models.audit import record_audit, snapshot
from models.base import utcnow
from models.billing import FREQUENCIES, Plan
from models.clock import occurrence_start, slot_label, studio_today, weekday_label
from models.config import get_settings
from models.db import is_postgres, violates
from models.enrollment import ACTIVE, HOLD_STATUSES, LIVE_STATUSES, PROVISIONAL, SLOT_DATES_CONSTRAINT, Enrollment
from models.errors import CardRequired, Invalid, NotFound, SlotTaken, TooManyHolds
from models.people import HoldingFamily, Instrument, Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Timeslot, first_lesson_on_or_after, semester_with_closures
from models.time_off import note_taught

BOOKING_HORIZON = timedelta(days=731)  # how far ahead an enrollment may start


@dataclass(frozen=True)
class _Facts:
    """What the booking rules read before any lock: one row of `_FACTS`."""

    slot_id: int | None
    weekday: int
    start_minute: int
    slot_active: bool
    teacher_name: str
    teacher_active: bool
    instrument_id: int | None
    instrument_name: str
    teaches: bool
    held_forever: bool  # a live enrollment of the slot has no end
    held_until: date | None  # the last end date of its live enrollments
    student_id: int | None
    student_payee_id: int | None
    student_archived: bool
    plan_id: int | None
    plan_active: bool
    plan_frequency: str | None

    @property
    def label(self) -> str:
        return slot_label(self.weekday, self.start_minute)


def _read_facts(session: Session, *, timeslot_id: int, instrument: str, plan: str | int | None, student_id: int) -> _Facts:
    """The slot with its teacher, the instrument, the student and the plan in one statement.

    `plan` is an id or a frequency name (the newest active plan of it), as `get_plan`."""
    params: dict = {"timeslot_id": timeslot_id, "instrument_name": instrument.strip().lower(), "student_id": student_id}
    text = "" if plan is None else str(plan).strip().lower()
    if plan is None:
        statement = _FACTS_NO_PLAN
    elif text.isdigit():
        statement, params["plan_id"] = _FACTS_PLAN_BY_ID, int(text)
    elif text in FREQUENCIES:
        statement, params["frequency"] = _FACTS_PLAN_BY_FREQUENCY, text
    else:
        raise Invalid(f"plan must be an id or one of {', '.join(FREQUENCIES)}", field="plan")
    return _Facts(*session.execute(statement, params).one())


def _new_enrollment(
    session: Session,
    *,
    student_id: int,
    timeslot_id: int,
    instrument: str,
    plan: str | int | None,
    start_date: date | None,
    status: str,
    offline: bool,
    now: datetime,
    actor: str,
    hold_for: HoldingFamily | None = None,
) -> Enrollment:
    """The one booking rule behind both doors. `hold_for`: a family's provisional hold (the
    student must be theirs; their holds are counted under their row lock)."""
    settings = get_settings()
    # Everything that needs no lock is read first, in one statement: the slot with its
    # teacher, the instrument by name, whether the teacher teaches it, until when live
    # enrollments hold the slot, the student and the plan. A slot taken before this
    # request is answered from it, without any lock. The locks (the family's row, then the
    # slot's) are then held only for what must be read under them and the inserts.
    facts = _read_facts(session, timeslot_id=timeslot_id, instrument=instrument, plan=plan, student_id=student_id)
    if facts.student_id is None or facts.student_archived or (hold_for is not None and facts.student_payee_id != hold_for.id):
        raise NotFound(f"no student {student_id}", field="student_id")  # as get_student: never Forbidden
    if facts.slot_id is None:  # no such slot: the errors keep their order (instrument, plan, then slot)
        if facts.instrument_id is None:
            raise NotFound(f"no instrument named {instrument!r}", field="instrument")
        if plan is not None and facts.plan_id is None:
            raise NotFound(f"no plan {plan!r}", field="plan")
        raise NotFound(f"no timeslot {timeslot_id}", field="timeslot_id")
    if facts.instrument_id is None:
        raise NotFound(f"no instrument named {instrument!r}", field="instrument")
    if plan is not None and facts.plan_id is None:
        raise NotFound(f"no plan {plan!r}", field="plan")
    if plan is not None and not facts.plan_active:
        raise Invalid(f"plan {facts.plan_id} is no longer offered", field="plan")
    if not facts.slot_active or not facts.teacher_active:
        raise Invalid(f"timeslot {facts.slot_id} is not open for booking", field="timeslot_id")
    if not facts.teaches:
        raise Invalid(f"{facts.teacher_name} does not teach {facts.instrument_name}", field="instrument")
    today = studio_today(now)
    if start_date is not None:
        # The admin enters a roster mid-term (offline: paid outside Stripe) from a past lesson,
        # so attendance can be recorded; what Stripe bills starts ahead.
        backdated = offline and start_date >= today - BOOKING_HORIZON
        if start_date < today and not backdated:
            raise Invalid(f"start date {start_date} is in the past", field="start_date")
        if start_date > today + BOOKING_HORIZON:
            raise Invalid(f"start date {start_date} is more than {BOOKING_HORIZON.days} days ahead", field="start_date")
        if start_date.weekday() != facts.weekday:
            raise Invalid(f"{start_date} is not a {weekday_label(facts.weekday)}", field="start_date")
        if start_date == today and not backdated and occurrence_start(today, facts.start_minute, settings.tz) <= now:
            raise Invalid(f"today's {facts.label} lesson has already started; start next week", field="start_date")
    # Taken before this request (held forever, or on the start date asked): no need to queue for the lock.
    free_from = facts.held_until + timedelta(days=1) if facts.held_until else None
    if facts.held_forever or (start_date and free_from and start_date < free_from):
        raise _taken(facts, free_from if not facts.held_forever else None)
    # Without a start date the first lesson is the next one that has not started yet, once the slot is free.
    earliest = today if occurrence_start(today, facts.start_minute, settings.tz) > now else today + timedelta(days=1)
    earliest = max(earliest, free_from) if free_from else earliest
    semester, closures = semester_with_closures(session, start_date or earliest)
    if semester and start_date and start_date > semester.ends_on:
        raise Invalid(f"{start_date} is after the semester ends", field="start_date")
    first_day = max(start_date or earliest, semester.starts_on if semester else earliest)
    first_lesson = first_lesson_on_or_after(facts.weekday, first_day, closures, semester)
    if facts.plan_frequency == "semester" and semester is None:
        raise Invalid("a semester plan needs a semester", field="plan")
    # Locks, always in this order: the family's row (serialises its holds: the cap), the
    # card-less holds' lock (a family without a card on file: serialises the studio-wide cap),
    # the slot's row (serialises bookings of one slot). SQLite: the unit of work began IMMEDIATE.
    postgres = is_postgres(session)
    cardless = hold_for is not None and hold_for.stripe_payment_method_id is None
    if hold_for is not None and postgres:
        session.execute(_LOCK_PAYEE, {"payee_id": hold_for.id})
        if cardless:
            session.execute(_LOCK_CARDLESS_HOLDS)
    slot_active = session.execute(_LOCK_SLOT if postgres else _SLOT_ACTIVE, {"timeslot_id": facts.slot_id}).scalar()
    if not slot_active:  # an admin closed it meanwhile
        raise Invalid(f"timeslot {timeslot_id} is not open for booking", field="timeslot_id")
    # A new statement after the locks, so its snapshot holds what the previous holders of the
    # locks committed: until when live enrollments hold the slot, the last booked make-up on it
    # (it owns its slot-date: the weekly lessons start after it), the family's holds.
    held_forever, held_until, last_makeup, holds = session.execute(
        _UNDER_LOCKS, {"timeslot_id": facts.slot_id, "payee_id": hold_for.id if hold_for is not None else 0}
    ).one()
    if held_forever or (start_date and held_until and held_until >= first_lesson):
        raise _taken(facts, held_until + timedelta(days=1) if held_until and not held_forever else None)
    if cardless:
        _check_cardless_caps(session, holds)
    elif hold_for is not None and holds >= settings.MAX_HOLDS_PER_PAYEE:
        raise TooManyHolds(f"you already hold {holds} provisional bookings (the limit is {settings.MAX_HOLDS_PER_PAYEE})")
    taken_until = max((day for day in (held_until, last_makeup) if day is not None), default=None)
    if taken_until is not None and taken_until >= first_lesson:
        first_lesson = first_lesson_on_or_after(facts.weekday, taken_until + timedelta(days=1), closures, semester)
    enrollment = Enrollment(
        student_id=facts.student_id,
        timeslot_id=facts.slot_id,
        instrument_id=facts.instrument_id,
        plan_id=facts.plan_id,
        semester_id=semester.id if semester else None,
        status=status,
        offline=offline,
        start_date=first_lesson,
        provisional_expires_at=now + timedelta(minutes=_hold_minutes(settings, cardless)) if status == PROVISIONAL else None,
        created_at=now,
        updated_at=now,
    )
    # The database's date-range rule is the last line: no row back means the slot is taken.
    if not _insert_unless_slot_held(session, enrollment):
        raise _taken(facts, None)
    note_taught(session, enrollment)  # an offline assignment or a move: its teacher may be away
    record_audit(
        session,
        actor=actor,
        action=f"enrollment.{'assign' if offline else 'hold'}",
        entity=enrollment,
        after=snapshot(enrollment),
    )
    return enrollment


def _taken(facts: _Facts, free_from: date | None) -> SlotTaken:
    free = f"; it is free from {free_from.isoformat()}" if free_from else ""
    return SlotTaken(f"timeslot {facts.slot_id} ({facts.label}) is taken{free}")


def _hold_minutes(settings, cardless: bool) -> int:
    return settings.CARDLESS_HOLD_MINUTES if cardless else settings.PROVISIONAL_HOLD_MINUTES


def _check_cardless_caps(session: Session, holds: int) -> None:
    """A family without a card on file holds CARDLESS_HOLDS_PER_PAYEE slots (1) at a time, and only while fewer than
    MAX_CARDLESS_HOLDS card-less holds exist in the studio (read under their lock)."""
    settings = get_settings()
    if holds >= settings.CARDLESS_HOLDS_PER_PAYEE:
        raise CardRequired(
            f"without a card on file a family holds {settings.CARDLESS_HOLDS_PER_PAYEE} slot(s) at a time: "
            "add a card (POST /parent/payment-setup) to hold more"
        )
    if session.execute(_CARDLESS_HOLDS).scalar_one() >= settings.MAX_CARDLESS_HOLDS:
        raise CardRequired(
            "many families are holding slots without a card right now: add a card (POST /parent/payment-setup) to book"
        )


def _live_of(timeslot_id):
    """The live enrollments of a slot (a column or a bound parameter)."""
    return sa.and_(Enrollment.timeslot_id == timeslot_id, Enrollment.status.in_(LIVE_STATUSES))


def _facts_statement(plan_on):
    """`_FACTS` for one way of naming the plan (`plan_on`: the join condition, or None)."""
    anchor = sa.select(sa.literal(1).label("one")).subquery("anchor")
    columns = [
        Timeslot.id,
        Timeslot.weekday,
        Timeslot.start_minute,
        Timeslot.active,
        Teacher.name,
        Teacher.active,
        Instrument.id,
        Instrument.name,
        sa.exists().where(TeacherInstrument.teacher_id == Timeslot.teacher_id, TeacherInstrument.instrument_id == Instrument.id),
        sa.exists().where(_live_of(Timeslot.id), Enrollment.end_date.is_(None)),
        select(func.max(Enrollment.end_date)).where(_live_of(Timeslot.id)).scalar_subquery(),
        Student.id,
        Student.payee_id,
        Student.archived_at.is_not(None),
        Plan.id if plan_on is not None else sa.null(),
        Plan.active if plan_on is not None else sa.false(),
        Plan.frequency if plan_on is not None else sa.null(),
    ]
    statement = (
        sa.select(*columns)
        .select_from(anchor)
        .outerjoin(Timeslot, Timeslot.id == sa.bindparam("timeslot_id", type_=sa.Integer))
        .outerjoin(Teacher, Teacher.id == Timeslot.teacher_id)
        .outerjoin(Instrument, Instrument.name == sa.bindparam("instrument_name", type_=sa.String))
        .outerjoin(Student, Student.id == sa.bindparam("student_id", type_=sa.Integer))
    )
    return statement.outerjoin(Plan, plan_on) if plan_on is not None else statement


# The facts of a booking, read without a lock, one statement in all. Built once: statement
# building costs more than PostgreSQL's answer. One anchor row, everything outer-joined to it,
# so a missing slot, student, instrument or plan is a NULL, never a missing row.
_FACTS_NO_PLAN = _facts_statement(None)
_FACTS_PLAN_BY_ID = _facts_statement(Plan.id == sa.bindparam("plan_id", type_=sa.Integer))
_FACTS_PLAN_BY_FREQUENCY = _facts_statement(
    Plan.id
    == select(Plan.id)
    .where(Plan.frequency == sa.bindparam("frequency", type_=sa.String), Plan.active.is_(True))
    .order_by(Plan.id.desc())
    .limit(1)
    .scalar_subquery()
)
# PostgreSQL's transaction-scoped advisory lock for card-less holds (a constant key of ours).
_LOCK_CARDLESS_HOLDS = sa.select(sa.func.pg_advisory_xact_lock(0x5374_7564_696F))
# Provisional holds of families without a card on file, studio-wide.
_CARDLESS_HOLDS = (
    select(func.count(Enrollment.id))
    .join(Student, Student.id == Enrollment.student_id)
    .join(Payee, Payee.id == Student.payee_id)
    .where(Enrollment.status == PROVISIONAL, Payee.stripe_payment_method_id.is_(None))
)
_LOCK_PAYEE = select(Payee.id).where(Payee.id == sa.bindparam("payee_id", type_=sa.Integer)).with_for_update()
_SLOT_ACTIVE = select(Timeslot.active).where(Timeslot.id == sa.bindparam("timeslot_id", type_=sa.Integer))
_LOCK_SLOT = _SLOT_ACTIVE.with_for_update()

# Read under the locks, one statement: whether a live enrollment of slot `:timeslot_id` has
# no end, the last end of its live ones, the latest date of a booked or used make-up on it,
# and the holds of family `:payee_id` — provisional ones and those waiting for a 3-D Secure
# check, which hold a slot for a day (else a card that always asks would let a family hoard
# slots past the cap).
_SLOT_PARAM = sa.bindparam("timeslot_id", type_=sa.Integer)
_UNDER_LOCKS = select(
    sa.exists().where(_live_of(_SLOT_PARAM), Enrollment.end_date.is_(None)),
    select(func.max(Enrollment.end_date)).where(_live_of(_SLOT_PARAM)).scalar_subquery(),
    select(func.max(MakeUp.lesson_date))
    .where(MakeUp.timeslot_id == sa.bindparam("timeslot_id", type_=sa.Integer), MakeUp.status.in_(TAKEN_STATUSES))
    .scalar_subquery(),
    select(func.count(Enrollment.id))
    .join(Student, Student.id == Enrollment.student_id)
    .where(Student.payee_id == sa.bindparam("payee_id", type_=sa.Integer), Enrollment.status.in_(HOLD_STATUSES))
    .scalar_subquery(),
)


def _insert_unless_slot_held(session: Session, enrollment: Enrollment) -> bool:
    """INSERT ... RETURNING the id. True when inserted (`enrollment` is then a persistent row of
    the session, no re-read); False when the database's date-range rule refuses it. PostgreSQL:
    ON CONFLICT DO NOTHING, which with no conflict target stands back from an exclusion
    constraint too (no savepoint round trips); SQLite: its trigger's abort, in a savepoint."""
    table = Enrollment.__table__
    values = {column.name: getattr(enrollment, column.name) for column in table.columns if column.name != "id"}
    if is_postgres(session):
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
        new_id = session.execute(statement.returning(table.c.id)).scalar()
    else:
        try:
            with session.begin_nested():
                new_id = session.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar()
        except sa.exc.IntegrityError as error:
            if not violates(error, SLOT_DATES_CONSTRAINT):
                raise
            new_id = None
    if new_id is None:
        return False
    enrollment.id = new_id
    make_transient_to_detached(enrollment)
    session.add(enrollment)
    return True


def hold_slot(
    session: Session,
    *,
    payee: HoldingFamily,
    student_id: int,
    timeslot_id: int,
    instrument: str,
    plan: str | int,
    start_date: date | None = None,
    actor: str,
    now: datetime | None = None,
) -> Enrollment:
    """Put a provisional hold on a slot for one of `payee`'s students.

    Checks ownership (another family's student is NotFound) and the slot (active, teacher
    teaches the instrument); a slot already taken raises SlotTaken without taking a lock.
    Then, under the family's row lock and the slot's, the hold cap (TooManyHolds) and the
    slot once more, and inserts the provisional enrollment. The caller enqueues the
    booking task after commit.
    """
    now = now or utcnow()
    return _new_enrollment(
        session,
        student_id=student_id,
        timeslot_id=timeslot_id,
        instrument=instrument,
        plan=plan,
        start_date=start_date,
        status=PROVISIONAL,
        offline=False,
        now=now,
        actor=actor,
        hold_for=payee,
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
    if not offline and plan is None:
        raise Invalid("a plan is needed unless the enrollment is --offline", field="plan")
    return _new_enrollment(
        session,
        student_id=student_id,
        timeslot_id=timeslot_id,
        instrument=instrument,
        plan=plan,
        start_date=start_date,
        status=ACTIVE if offline else PROVISIONAL,
        offline=offline,
        now=now,
        actor=actor,
    )
