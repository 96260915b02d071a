"""Enrollments: a student holding a weekly slot, and the life of that hold.

    provisional ──> active ──> cancelled
      │  │           │  ^  ^ \
      │  │           v  │  │  paused (Stripe paused collection) ──> active | cancelled
      │  │        past_due ──> cancelled (grace over)
      │  └──> action_required (the first payment waits for the parent's 3-D Secure check;
      │          the hold is extended) ──> active | expired (window over) | cancelled
      ├──> failed   (card declined, terminal Stripe error)
      ├──> expired  (hold ran out before billing was set up)
      └──> cancelled (admin)

At most one *live* (provisional, action_required, active, past_due, paused) enrollment per
timeslot: the booking
locks the slot row and checks, and a partial unique index in the database is the last
line of defence.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, func, select

from models.audit import change_audited, record_audit, snapshot
from models.base import enum_check, utc_column, utcnow
from models.billing import Plan, get_plan
from models.config import get_settings
from models.db import is_postgres, lock_row
from models.errors import Conflict, Invalid, NotFound, SlotTaken, TooManyHolds
from models.outbox import queue_admin_alert, queue_email
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument, get_instrument, get_student, teaches
from models.scheduling import (
    Semester, SemesterClosure, Timeslot, all_closures, closures_of, format_minute, occurrence_start, semester_on, slot_dates, WEEKDAYS,
)

PROVISIONAL, ACTIVE, PAST_DUE = "provisional", "active", "past_due"
ACTION_REQUIRED, PAUSED = "action_required", "paused"
FAILED, EXPIRED, CANCELLED = "failed", "expired", "cancelled"
STATUSES = (PROVISIONAL, ACTIVE, PAST_DUE, FAILED, EXPIRED, CANCELLED, ACTION_REQUIRED, PAUSED)
# Live statuses hold their slot. `action_required`: the first payment waits for the parent's
# 3-D Secure check (a hold, extended); `paused`: Stripe paused collection (no lessons).
LIVE_STATUSES = (PROVISIONAL, ACTIVE, PAST_DUE, ACTION_REQUIRED, PAUSED)
# Holds: the booking is not paid yet, the hold expires at `provisional_expires_at`.
HOLD_STATUSES = (PROVISIONAL, ACTION_REQUIRED)
_LIVE_SQL = "status IN ('provisional', 'active', 'past_due', 'action_required', 'paused')"
BOOKING_HORIZON = timedelta(days=731)  # how far ahead an enrollment may start
# Stripe expires an incomplete subscription (and voids its first invoice) 23 hours after it
# was made: a booking waiting for its first payment's 3-D Secure check waits at most this long.
SUBSCRIPTION_ACTION_HOURS = 22.0


class Enrollment(SQLModel, table=True):
    """A student's weekly lesson in a timeslot, billed by a plan."""

    __table_args__ = (
        enum_check("status", STATUSES, "status_known"),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates_ordered"),
        sa.CheckConstraint("status NOT IN ('provisional', 'action_required') OR provisional_expires_at IS NOT NULL",
                           name="hold_expires"),
        # One live enrollment per slot, enforced by the database itself on both engines.
        sa.Index(
            "uq_enrollment_live_timeslot", "timeslot_id", unique=True,
            postgresql_where=sa.text(_LIVE_SQL), sqlite_where=sa.text(_LIVE_SQL),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    student_id: int = Field(foreign_key="student.id", index=True, ondelete="RESTRICT")
    timeslot_id: int = Field(foreign_key="timeslot.id", index=True, ondelete="RESTRICT")
    instrument_id: int = Field(foreign_key="instrument.id", ondelete="RESTRICT")
    plan_id: int | None = Field(default=None, foreign_key="plan.id", ondelete="RESTRICT")
    semester_id: int | None = Field(default=None, foreign_key="semester.id", ondelete="SET NULL")
    status: str = Field(default=PROVISIONAL, max_length=16, index=True)
    offline: bool = Field(default=False)
    provisional_expires_at: datetime | None = Field(default=None, sa_column=utc_column(index=True))
    start_date: date
    end_date: date | None = None
    stripe_subscription_id: str | None = Field(default=None, max_length=64, index=True)
    stripe_invoice_id: str | None = Field(default=None, max_length=64)
    stripe_payment_intent_id: str | None = Field(default=None, max_length=64)
    pipeline_state: str | None = Field(default=None, max_length=32)
    # A payment waiting for the parent (3-D Secure): what the app needs to let them finish it.
    # The client secret is Stripe's per-payment secret for Stripe.js (never logged or audited).
    action_client_secret: str | None = Field(default=None, max_length=255)
    action_url: str | None = Field(default=None, max_length=1000)
    # Bumped when a Stripe create got an ambiguous answer and was not found afterwards: the next
    # create uses a new idempotency key (Stripe replays a stored 500 for a reused one).
    stripe_key_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    failure_reason: str | None = Field(default=None, max_length=500)
    cancel_reason: str | None = Field(default=None, max_length=500)
    past_due_since: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


# Reading -------------------------------------------------------------------------------


def get_enrollment(session: Session, enrollment_id: int, *, payee_id: int | None = None) -> Enrollment:
    """An enrollment by id; with `payee_id`, only that family's (others are NotFound)."""
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None:
        raise NotFound(f"no enrollment {enrollment_id}", field="enrollment_id")
    if payee_id is not None:
        student = session.get(Student, enrollment.student_id)
        if student is None or student.payee_id != payee_id:
            raise NotFound(f"no enrollment {enrollment_id}", field="enrollment_id")
    return enrollment


def lock_enrollment(session: Session, enrollment_id: int) -> Enrollment | None:
    """Load an enrollment for update (row lock on PostgreSQL), or None."""
    return lock_row(session, Enrollment, enrollment_id)


def live_enrollment_for_slot(session: Session, timeslot_id: int) -> Enrollment | None:
    """The live enrollment holding a slot, if any."""
    return session.exec(
        select(Enrollment).where(Enrollment.timeslot_id == timeslot_id, Enrollment.status.in_(LIVE_STATUSES))
    ).first()


def lesson_end(session: Session, enrollment: Enrollment) -> date | None:
    """The last possible lesson date: the enrollment's end, else its semester's end."""
    if enrollment.end_date:
        return enrollment.end_date
    if enrollment.semester_id:
        semester = session.get(Semester, enrollment.semester_id)
        return semester.ends_on if semester else None
    return None


def lesson_dates(
    session: Session, enrollment: Enrollment, *, first: date | None = None, last: date | None = None,
    closures: set[date] | None = None,
) -> list[date]:
    """The enrollment's lesson dates (closures removed) within [first, last]."""
    slot = session.get(Timeslot, enrollment.timeslot_id)
    start = max(enrollment.start_date, first) if first else enrollment.start_date
    end = lesson_end(session, enrollment)
    end = min(end, last) if (end and last) else (end or last)
    if end is None:
        raise Invalid(f"enrollment {enrollment.id} has no end date; give a range")
    if closures is None:
        closures = closures_of(session, enrollment.semester_id) if enrollment.semester_id else all_closures(session)
    return slot_dates(slot.weekday, start, end, closures)


def is_occurrence(session: Session, enrollment: Enrollment, lesson_date: date) -> bool:
    """True when `lesson_date` is a real lesson of the enrollment (weekday, range, no closure)."""
    slot = session.get(Timeslot, enrollment.timeslot_id)
    if lesson_date.weekday() != slot.weekday or lesson_date < enrollment.start_date:
        return False
    end = lesson_end(session, enrollment)
    if end is not None and lesson_date > end:
        return False
    closures = closures_of(session, enrollment.semester_id) if enrollment.semester_id else all_closures(session)
    return lesson_date not in closures


def email_context(session: Session, enrollment: Enrollment) -> dict:
    """The facts every enrollment email shows (JSON-safe, stored with the EmailLog row)."""
    settings = get_settings()
    student = session.get(Student, enrollment.student_id)
    payee = session.get(Payee, student.payee_id)
    slot = session.get(Timeslot, enrollment.timeslot_id)
    teacher = session.get(Teacher, slot.teacher_id)
    instrument = session.get(Instrument, enrollment.instrument_id)
    plan = session.get(Plan, enrollment.plan_id) if enrollment.plan_id else None
    return {
        "studio_name": settings.STUDIO_NAME,
        "timezone": settings.STUDIO_TIMEZONE,
        "enrollment_id": enrollment.id,
        "payee_name": payee.name,
        "student_name": student.name,
        "teacher_name": teacher.name,
        "instrument": instrument.name,
        "weekday": WEEKDAYS[slot.weekday].title(),
        "time": format_minute(slot.start_minute),
        "start_date": enrollment.start_date.isoformat(),
        "status": enrollment.status,
        "plan": plan.frequency if plan else "offline",
        "amount": f"{plan.amount:.2f} {plan.currency.upper()}" if plan else None,
        "expires_at": enrollment.provisional_expires_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M %Z")
        if enrollment.provisional_expires_at else None,
        "failure_reason": enrollment.failure_reason,
        "booking_url": f"{settings.PARENT_APP_URL.rstrip('/')}/bookings/{enrollment.id}" if settings.PARENT_APP_URL else None,
    }


def payee_of(session: Session, enrollment: Enrollment) -> Payee:
    """The family paying for an enrollment."""
    student = session.get(Student, enrollment.student_id)
    return session.get(Payee, student.payee_id)


# Booking -------------------------------------------------------------------------------


def _first_lesson_on_or_after(slot: Timeslot, day: date, closures: set[date], semester: Semester | None) -> date:
    last = semester.ends_on if semester else day + timedelta(days=7 * 60)
    dates = slot_dates(slot.weekday, day, last, closures)
    if not dates:
        raise Invalid("no lesson date left for this slot in the semester", field="start_date")
    return dates[0]


def _new_enrollment(
    session: Session, *, student: Student, timeslot_id: int, instrument: str, plan: str | int | None,
    start_date: date | None, status: str, offline: bool, now: datetime, actor: str,
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
    today = now.astimezone(settings.tz).date()
    if start_date is not None:
        if start_date < today:
            raise Invalid(f"start date {start_date} is in the past", field="start_date")
        if start_date > today + BOOKING_HORIZON:
            raise Invalid(f"start date {start_date} is more than {BOOKING_HORIZON.days} days ahead", field="start_date")
        if start_date.weekday() != slot.weekday:
            raise Invalid(f"{start_date} is not a {WEEKDAYS[slot.weekday].title()}", field="start_date")
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
    live_id, last_makeup = session.execute(_live_and_last_makeup(), {"timeslot_id": slot.id}).one()
    if live_id is not None:
        raise SlotTaken(f"timeslot {slot.id} ({slot.label}) is taken")
    if last_makeup is not None and last_makeup >= first_lesson:
        first_lesson = _first_lesson_on_or_after(slot, last_makeup + timedelta(days=1), closures, semester)
    enrollment = Enrollment(
        student_id=student.id, timeslot_id=slot.id, instrument_id=instrument_id,
        plan_id=plan_row.id if plan_row else None, semester_id=semester.id if semester else None,
        status=status, offline=offline, start_date=first_lesson,
        provisional_expires_at=now + timedelta(minutes=settings.PROVISIONAL_HOLD_MINUTES) if status == PROVISIONAL else None,
        created_at=now, updated_at=now,
    )
    # The partial unique index is the last line: the insert does nothing on a live
    # enrollment of the slot, and no row back means the slot is taken.
    if not _insert_unless_slot_live(session, enrollment):
        raise SlotTaken(f"timeslot {slot.id} ({slot.label}) is taken")
    record_audit(session, actor=actor, action=f"enrollment.{'assign' if offline else 'hold'}", entity=enrollment, after=snapshot(enrollment))
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
        Timeslot, Teacher.name, Teacher.active, Instrument.id, Instrument.name,
        sa.exists().where(TeacherInstrument.teacher_id == Timeslot.teacher_id,
                          TeacherInstrument.instrument_id == Instrument.id),
        sa.exists().where(Enrollment.timeslot_id == Timeslot.id, Enrollment.status.in_(LIVE_STATUSES)),
    )
    .join(Teacher, Teacher.id == Timeslot.teacher_id)
    .outerjoin(Instrument, Instrument.name == sa.bindparam("instrument_name", type_=sa.String))
    .where(Timeslot.id == sa.bindparam("timeslot_id", type_=sa.Integer))
)


@functools.lru_cache(maxsize=1)
def _live_and_last_makeup():
    """A live enrollment of slot `:timeslot_id` (its id or NULL) and the latest date of a
    booked or used make-up on it, in one statement (run under the slot's lock)."""
    from models.attendance import MakeUp  # attendance imports this module

    return select(
        select(Enrollment.id)
        .where(Enrollment.timeslot_id == sa.bindparam("timeslot_id", type_=sa.Integer),
               Enrollment.status.in_(LIVE_STATUSES))
        .limit(1).scalar_subquery(),
        select(func.max(MakeUp.lesson_date))
        .where(MakeUp.timeslot_id == sa.bindparam("timeslot_id", type_=sa.Integer),
               MakeUp.status.in_(("booked", "used")))
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
    from sqlalchemy.orm import make_transient_to_detached

    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = Enrollment.__table__
    values = {column.name: getattr(enrollment, column.name) for column in table.columns if column.name != "id"}
    statement = (
        insert(table).values(**values)
        .on_conflict_do_nothing(index_elements=["timeslot_id"], index_where=sa.text(_LIVE_SQL))
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
    session: Session, *, payee: Payee, student_id: int, timeslot_id: int, instrument: str,
    plan: str | int, start_date: date | None = None, actor: str, now: datetime | None = None,
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
        session, student=student, timeslot_id=timeslot_id, instrument=instrument, plan=plan,
        start_date=start_date, status=PROVISIONAL, offline=False, now=now, actor=actor,
    )


def assign_enrollment(
    session: Session, *, student_id: int, timeslot_id: int, instrument: str, plan: str | int | None,
    start_date: date | None = None, offline: bool = False, actor: str, now: datetime | None = None,
) -> Enrollment:
    """The admin's door: `offline` (paid outside Stripe) is active at once, else a provisional hold."""
    now = now or utcnow()
    student = get_student(session, student_id)
    if not offline and plan is None:
        raise Invalid("a plan is needed unless the enrollment is --offline", field="plan")
    return _new_enrollment(
        session, student=student, timeslot_id=timeslot_id, instrument=instrument, plan=plan,
        start_date=start_date, status=ACTIVE if offline else PROVISIONAL, offline=offline, now=now, actor=actor,
    )


def _transition(session: Session, enrollment: Enrollment, status: str, *, actor: str, action: str, **changes) -> Enrollment:
    return change_audited(session, enrollment, actor=actor, action=action, status=status, **changes, updated_at=utcnow())


def touch_pipeline(session: Session, enrollment: Enrollment, state: str) -> None:
    """Record the booking pipeline's progress (the reconciliation job reads it)."""
    enrollment.pipeline_state = state
    enrollment.updated_at = utcnow()
    session.add(enrollment)
    session.flush()


def activate_enrollment(
    session: Session, enrollment: Enrollment, *, actor: str, subscription_id: str | None = None,
    payment_intent_id: str | None = None, invoice_id: str | None = None,
) -> bool:
    """provisional or action_required → active once billing is set up (or the parent's 3-D Secure
    check passed); queues `booking_confirmation`. False if not such a hold."""
    if enrollment.status not in HOLD_STATUSES:
        return False
    _transition(
        session, enrollment, ACTIVE, actor=actor, action="enrollment.activate",
        stripe_subscription_id=subscription_id or enrollment.stripe_subscription_id,
        stripe_payment_intent_id=payment_intent_id or enrollment.stripe_payment_intent_id,
        stripe_invoice_id=invoice_id or enrollment.stripe_invoice_id,
        provisional_expires_at=None, pipeline_state="done", action_client_secret=None, action_url=None,
    )
    payee = payee_of(session, enrollment)
    queue_email(
        session, template="booking_confirmation", recipient=payee.email,
        context=email_context(session, enrollment), dedupe_key=f"booking_confirmation:{enrollment.id}",
    )
    return True


@dataclass(frozen=True)
class PaymentAction:
    """A payment waiting for the parent: Stripe's client secret for Stripe.js, and a page to pay on."""

    client_secret: str
    url: str | None = None


def await_payment_action(
    session: Session, enrollment: Enrollment, *, actor: str, action: PaymentAction,
    subscription_id: str | None = None, invoice_id: str | None = None, payment_intent_id: str | None = None,
    now: datetime | None = None,
) -> bool:
    """provisional → action_required: the first payment needs the parent's 3-D Secure check. The
    slot stays held for ACTION_REQUIRED_HOURS (at most SUBSCRIPTION_ACTION_HOURS for a
    subscription: Stripe gives up on its first invoice after 23 hours); the parent gets
    `payment_action_required` with the link (once). False if no longer provisional."""
    if enrollment.status != PROVISIONAL:
        return False
    now = now or utcnow()
    hours = get_settings().ACTION_REQUIRED_HOURS
    if subscription_id or enrollment.stripe_subscription_id:
        hours = min(hours, SUBSCRIPTION_ACTION_HOURS)
    _transition(
        session, enrollment, ACTION_REQUIRED, actor=actor, action="enrollment.action_required",
        provisional_expires_at=now + timedelta(hours=hours),
        stripe_subscription_id=subscription_id or enrollment.stripe_subscription_id,
        stripe_invoice_id=invoice_id or enrollment.stripe_invoice_id,
        stripe_payment_intent_id=payment_intent_id or enrollment.stripe_payment_intent_id,
        action_client_secret=action.client_secret, action_url=action.url, pipeline_state="action_required",
    )
    context = email_context(session, enrollment) | {"action_url": action.url, "renewal": False}
    queue_email(session, template="payment_action_required", recipient=payee_of(session, enrollment).email,
                context=context, dedupe_key=f"payment_action_required:{enrollment.id}")
    return True


def fail_enrollment(session: Session, enrollment: Enrollment, *, reason: str, actor: str) -> bool:
    """provisional or action_required → failed with a reason the parent can read; alerts the admin.
    False if not such a hold."""
    if enrollment.status not in HOLD_STATUSES:
        return False
    _transition(
        session, enrollment, FAILED, actor=actor, action="enrollment.fail",
        failure_reason=reason[:500], provisional_expires_at=None, pipeline_state="failed",
        action_client_secret=None, action_url=None,
    )
    queue_admin_alert(
        session, subject=f"Booking {enrollment.id} failed", message=reason,
        dedupe_key=f"booking_failed:{enrollment.id}", admins=get_settings().admin_emails,
    )
    return True


def expire_hold(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """A hold → `expired` (slot free again); the parent gets `hold_expired`, the admin an alert.
    The caller undoes what Stripe holds for it. False when it is no longer a hold."""
    if enrollment.status not in HOLD_STATUSES:
        return False
    context = email_context(session, enrollment)
    _transition(session, enrollment, EXPIRED, actor=actor, action="enrollment.expire", pipeline_state="expired",
                action_client_secret=None, action_url=None)
    queue_email(session, template="hold_expired", recipient=payee_of(session, enrollment).email, context=context,
                dedupe_key=f"hold_expired:{enrollment.id}")
    queue_admin_alert(
        session, subject=f"Hold {enrollment.id} expired",
        message=f"{context['student_name']}'s hold on {context['weekday']} {context['time']} with {context['teacher_name']} expired.",
        dedupe_key=f"hold_expired:{enrollment.id}", admins=get_settings().admin_emails,
    )
    return True


def holds_past_expiry(session: Session, *, status: str, now: datetime | None = None) -> list[int]:
    """Ids of holds of `status` whose expiry has passed (the expiry job re-reads Stripe for the
    action_required ones before expiring them)."""
    now = now or utcnow()
    return list(session.exec(
        select(Enrollment.id).where(Enrollment.status == status, Enrollment.provisional_expires_at <= now)
    ).all())


def expire_provisional_holds(
    session: Session, *, now: datetime | None = None, actor: str = "worker", spare: frozenset[int] = frozenset(),
) -> list[Enrollment]:
    """Every hold (provisional, or action_required: a payment the parent did not authenticate in
    time) past its expiry becomes `expired` (`expire_hold`), except the ids in `spare` (Stripe
    could not be asked whether they were paid). Safe to run twice: it selects by state."""
    now = now or utcnow()
    statement = select(Enrollment).where(Enrollment.status.in_(HOLD_STATUSES), Enrollment.provisional_expires_at <= now)
    if spare:
        statement = statement.where(Enrollment.id.not_in(spare))
    if is_postgres(session):
        statement = statement.with_for_update(skip_locked=True)
    return [enrollment for enrollment in session.exec(statement).all() if expire_hold(session, enrollment, actor=actor)]


def cancel_enrollment(session: Session, enrollment: Enrollment, *, reason: str | None, actor: str) -> Enrollment:
    """Cancel a live enrollment (slot freed). The caller cancels the Stripe subscription after commit.

    The row is re-read under its lock first: an expiry or activation that committed since
    the caller loaded it is seen, so `expired` or `failed` never turns into `cancelled`.
    """
    enrollment = lock_row(session, Enrollment, enrollment.id)
    if enrollment.status not in LIVE_STATUSES:
        raise Conflict(f"enrollment {enrollment.id} is {enrollment.status}, not live")
    return _transition(
        session, enrollment, CANCELLED, actor=actor, action="enrollment.cancel",
        cancel_reason=reason, provisional_expires_at=None,
        end_date=max(enrollment.start_date, utcnow().astimezone(get_settings().tz).date()),
    )


def mark_past_due(
    session: Session, enrollment: Enrollment, *, actor: str, now: datetime | None = None,
    action: PaymentAction | None = None,
) -> bool:
    """active → past_due on a failed renewal; queues `payment_failed` (or, when the bank wants
    the parent to authenticate the renewal, `payment_action_required` with the link) and an
    admin alert."""
    if enrollment.status != ACTIVE:
        return False
    now = now or utcnow()
    _transition(
        session, enrollment, PAST_DUE, actor=actor, action="enrollment.past_due", past_due_since=now,
        action_client_secret=action.client_secret if action else None, action_url=action.url if action else None,
    )
    payee = payee_of(session, enrollment)
    context = email_context(session, enrollment)
    context["grace_days"] = get_settings().DUNNING_GRACE_DAYS
    stamp = now.strftime("%Y%m%d")
    if action is not None:
        _queue_renewal_action_email(session, enrollment, action, now=now)
    else:
        queue_email(session, template="payment_failed", recipient=payee.email, context=context,
                    dedupe_key=f"payment_failed:{enrollment.id}:{stamp}")
    queue_admin_alert(
        session, subject=f"Payment failed for enrollment {enrollment.id}",
        message=f"{payee.name} ({payee.email}): payment for {context['student_name']} failed; slot held {context['grace_days']} days.",
        dedupe_key=f"payment_failed:{enrollment.id}:{stamp}", admins=get_settings().admin_emails,
    )
    return True


def _queue_renewal_action_email(session: Session, enrollment: Enrollment, action: PaymentAction, *, now: datetime) -> None:
    context = email_context(session, enrollment) | {
        "grace_days": get_settings().DUNNING_GRACE_DAYS, "action_url": action.url, "renewal": True,
    }
    queue_email(session, template="payment_action_required", recipient=payee_of(session, enrollment).email,
                context=context, dedupe_key=f"payment_action_required:{enrollment.id}:{now:%Y%m%d}")


def require_renewal_action(session: Session, enrollment: Enrollment, *, action: PaymentAction, actor: str,
                           now: datetime | None = None) -> bool:
    """A renewal the bank wants the parent to authenticate: active → past_due, or a past_due
    enrollment (its failed-payment event came first) gets the link. Either way the parent gets
    `payment_action_required` with the link, once a day at most. False for other statuses."""
    now = now or utcnow()
    if enrollment.status == ACTIVE:
        return mark_past_due(session, enrollment, actor=actor, now=now, action=action)
    if enrollment.status != PAST_DUE:
        return False
    if enrollment.action_client_secret != action.client_secret:
        change_audited(session, enrollment, actor=actor, action="enrollment.action_required",
                       action_client_secret=action.client_secret, action_url=action.url, updated_at=now)
    _queue_renewal_action_email(session, enrollment, action, now=now)
    return True


def mark_paid(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """past_due → active when the invoice got paid within the grace period."""
    if enrollment.status != PAST_DUE:
        return False
    _transition(session, enrollment, ACTIVE, actor=actor, action="enrollment.paid", past_due_since=None,
                action_client_secret=None, action_url=None)
    return True


def mark_paused(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """active or past_due → paused: Stripe paused the subscription (or its collection). The slot
    stays the family's; no lessons are shown. False when there is nothing to change."""
    if enrollment.status not in (ACTIVE, PAST_DUE):
        return False
    _transition(session, enrollment, PAUSED, actor=actor, action="enrollment.pause", past_due_since=None)
    return True


def mark_resumed(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """paused → active when Stripe resumed the subscription. False if not paused."""
    if enrollment.status != PAUSED:
        return False
    _transition(session, enrollment, ACTIVE, actor=actor, action="enrollment.resume")
    return True


def dunning_overdue(session: Session, *, now: datetime | None = None) -> list[Enrollment]:
    """past_due enrollments whose grace period is over."""
    now = now or utcnow()
    limit = now - timedelta(days=get_settings().DUNNING_GRACE_DAYS)
    return list(session.exec(
        select(Enrollment).where(Enrollment.status == PAST_DUE, Enrollment.past_due_since <= limit)
    ).all())


def stale_provisionals(session: Session, *, older_than: timedelta, now: datetime | None = None) -> list[Enrollment]:
    """Holds (provisional, action_required) with no pipeline progress for `older_than` (for
    reconciliation: a lost task is re-run; a payment the parent authenticated is found)."""
    now = now or utcnow()
    return list(session.exec(
        select(Enrollment).where(
            Enrollment.status.in_(HOLD_STATUSES), Enrollment.updated_at <= now - older_than,
            Enrollment.provisional_expires_at > now,
        )
    ).all())


def enrollments_of_payee(session: Session, payee_id: int) -> list[Enrollment]:
    """Every enrollment of a family, newest first."""
    return list(session.exec(
        select(Enrollment).join(Student, Student.id == Enrollment.student_id)
        .where(Student.payee_id == payee_id).order_by(Enrollment.id.desc())
    ).all())


def tz() -> ZoneInfo:
    """The studio's zone (shortcut)."""
    return get_settings().tz


def cancel_for_nonpayment(session: Session, enrollment: Enrollment, *, actor: str, now: datetime | None = None) -> bool:
    """past_due past its grace → cancelled, slot free; the parent (`payment_failed`, final) and
    the admin are told. False if the enrollment is no longer past_due (paid meanwhile)."""
    if enrollment.status != PAST_DUE:
        return False
    context = email_context(session, enrollment)
    cancel_enrollment(session, enrollment, reason="not paid within the grace period", actor=actor)
    context |= {"grace_days": get_settings().DUNNING_GRACE_DAYS, "final_notice": True, "status": CANCELLED}
    payee = payee_of(session, enrollment)
    queue_email(session, template="payment_failed", recipient=payee.email, context=context,
                dedupe_key=f"dunning_cancelled:{enrollment.id}")
    queue_admin_alert(
        session, subject=f"Enrollment {enrollment.id} cancelled for non-payment",
        message=f"{payee.name} ({payee.email}) did not pay for {context['student_name']} within {context['grace_days']} days; "
                f"{context['weekday']} {context['time']} with {context['teacher_name']} is free again.",
        dedupe_key=f"dunning_cancelled:{enrollment.id}", admins=get_settings().admin_emails,
    )
    return True


def enrollments_by_subscription(session: Session, subscription_id: str) -> list[Enrollment]:
    """Enrollments billed by a Stripe subscription (normally one)."""
    return list(session.exec(select(Enrollment).where(Enrollment.stripe_subscription_id == subscription_id)).all())


def awaiting_payment_method(session: Session, payee_id: int) -> list[Enrollment]:
    """A family's provisional enrollments whose pipeline waits for a card."""
    return list(session.exec(
        select(Enrollment).join(Student, Student.id == Enrollment.student_id)
        .where(Student.payee_id == payee_id, Enrollment.status == PROVISIONAL)
    ).all())


def billed_enrollments(session: Session) -> list[Enrollment]:
    """Active, past-due and paused enrollments billed through Stripe (for reconciliation)."""
    return list(session.exec(
        select(Enrollment).where(Enrollment.status.in_((ACTIVE, PAST_DUE, PAUSED)), Enrollment.offline.is_(False),
                                 Enrollment.stripe_subscription_id.is_not(None)).order_by(Enrollment.id)
    ).all())
