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

A slot is held for dates, not forever: no two *live* (provisional, action_required, active,
past_due, paused) enrollments of one timeslot overlap in dates (`start_date`..`end_date`, an
open end is forever). The booking (`models.booking`) locks the slot row and checks; the
database is the last line of defence (migration 0005: an exclusion constraint on PostgreSQL,
triggers on SQLite, `SLOT_DATES_CONSTRAINT`). Here: the table, its reads, the hold's
transitions; renewals (past_due, paused, cancelled for non-payment) are `models.dunning`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited
from models.base import enum_check, utc_column, utcnow
from models.billing import Plan
from models.clock import format_minute, studio_today, weekday_label
from models.config import get_settings
from models.db import is_postgres, lock_row
from models.errors import Conflict, Invalid, NotFound
from models.outbox import notify, queue_admin_alert, queue_email
from models.people import Instrument, Payee, Student, Teacher
from models.scheduling import Semester, Timeslot, all_closures, closures_of, slot_dates

PROVISIONAL, ACTIVE, PAST_DUE = "provisional", "active", "past_due"
ACTION_REQUIRED, PAUSED = "action_required", "paused"
FAILED, EXPIRED, CANCELLED = "failed", "expired", "cancelled"
# A freed slot offered to the waiting list (models.offers): it holds the slot like a booking until
# the family answers or the offer lapses (then `expired`); an acceptance books it anew.
OFFERED = "offered"
STATUSES = (PROVISIONAL, ACTIVE, PAST_DUE, FAILED, EXPIRED, CANCELLED, ACTION_REQUIRED, PAUSED, OFFERED)
# Live statuses hold their slot. `action_required`: the first payment waits for the parent's
# 3-D Secure check (a hold, extended); `paused`: Stripe paused collection (no lessons).
LIVE_STATUSES = (PROVISIONAL, ACTIVE, PAST_DUE, ACTION_REQUIRED, PAUSED, OFFERED)
# Holds: the booking is not paid yet, the hold expires at `provisional_expires_at`.
HOLD_STATUSES = (PROVISIONAL, ACTION_REQUIRED)
# Lessons take place (attendance is marked) for these; a hold is not a lesson yet.
TAUGHT_STATUSES = (ACTIVE, PAST_DUE, CANCELLED)
# The predicate of the live enrollments whose dates may not overlap on one slot.
LIVE_SQL = "status IN ('provisional', 'active', 'past_due', 'action_required', 'paused', 'offered')"
# The name of that rule in the database (PostgreSQL's exclusion constraint; the message of
# SQLite's triggers), which `models.db.violates` recognises in an IntegrityError.
SLOT_DATES_CONSTRAINT = "ex_enrollment_live_slot_dates"


class Enrollment(SQLModel, table=True):
    """A student's weekly lesson in a timeslot, billed by a plan."""

    __table_args__ = (
        enum_check("status", STATUSES, "status_known"),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates_ordered"),
        sa.CheckConstraint(
            "status NOT IN ('provisional', 'action_required') OR provisional_expires_at IS NOT NULL", name="hold_expires"
        ),
        # No two live enrollments of a slot overlap in dates (SQLite: triggers of migration 0005).
        postgresql.ExcludeConstraint(
            (sa.column("timeslot_id"), "="),
            (sa.func.daterange(sa.column("start_date"), sa.column("end_date"), sa.literal_column("'[]'")), "&&"),
            name=SLOT_DATES_CONSTRAINT,
            using="gist",
            where=sa.text(LIVE_SQL),
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
    # Cancelled by the family at the end of the paid period: still live until `end_date`.
    cancel_at_period_end: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Moved from another slot: the enrollment this one continues (its end is this one's start).
    moved_from_id: int | None = Field(
        default=None, foreign_key="enrollment.id", ondelete="SET NULL", sa_column_kwargs={"unique": True}
    )
    # Its sibling discount in percent and how often that changed (models/sibling_discount.py).
    discount_percent: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    discount_changes: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
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


def lesson_end(session: Session, enrollment: Enrollment) -> date | None:
    """The last possible lesson date: the enrollment's end, else its semester's end."""
    if enrollment.end_date:
        return enrollment.end_date
    if enrollment.semester_id:
        semester = session.get(Semester, enrollment.semester_id)
        return semester.ends_on if semester else None
    return None


def lesson_dates(
    session: Session,
    enrollment: Enrollment,
    *,
    first: date | None = None,
    last: date | None = None,
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
        "weekday": weekday_label(slot.weekday),
        "time": format_minute(slot.start_minute),
        "start_date": enrollment.start_date.isoformat(),
        "status": enrollment.status,
        "plan": plan.frequency if plan else "offline",
        "amount": f"{plan.amount:.2f} {plan.currency.upper()}" if plan else None,
        "discount_percent": enrollment.discount_percent if plan else 0,
        "discounted_amount": plan.discounted_label(enrollment.discount_percent) if plan else None,
        "expires_at": enrollment.provisional_expires_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M %Z")
        if enrollment.provisional_expires_at
        else None,
        "failure_reason": enrollment.failure_reason,
        "booking_url": f"{settings.PARENT_APP_URL.rstrip('/')}/bookings/{enrollment.id}" if settings.PARENT_APP_URL else None,
    }


def payee_of(session: Session, enrollment: Enrollment) -> Payee:
    """The family paying for an enrollment."""
    student = session.get(Student, enrollment.student_id)
    return session.get(Payee, student.payee_id)


def archive_student(session: Session, student: Student, *, actor: str) -> Student:
    """Remove a student from the family list; refused while they hold a live enrollment."""
    live = session.exec(
        select(Enrollment.id).where(Enrollment.student_id == student.id, Enrollment.status.in_(LIVE_STATUSES))
    ).first()
    if live is not None:
        raise Conflict(f"student {student.id} has a live enrollment ({live}); cancel it first")
    return change_audited(session, student, actor=actor, action="student.remove", archived_at=utcnow())


# Transitions of the hold --------------------------------------------------------------


def change_status(session: Session, enrollment: Enrollment, status: str, *, actor: str, action: str, **changes) -> Enrollment:
    """Move `enrollment` to `status` with `changes`, audited as `action` (the caller checked the move)."""
    return change_audited(session, enrollment, actor=actor, action=action, status=status, **changes, updated_at=utcnow())


def touch_pipeline(session: Session, enrollment: Enrollment, state: str) -> None:
    """Record the booking pipeline's progress (the reconciliation job reads it)."""
    enrollment.pipeline_state = state
    enrollment.updated_at = utcnow()
    session.add(enrollment)
    session.flush()


def activate_enrollment(
    session: Session,
    enrollment: Enrollment,
    *,
    actor: str,
    subscription_id: str | None = None,
    payment_intent_id: str | None = None,
    invoice_id: str | None = None,
) -> bool:
    """provisional or action_required → active once billing is set up (or the parent's 3-D Secure
    check passed); queues `booking_confirmation`. False if not such a hold."""
    if enrollment.status not in HOLD_STATUSES:
        return False
    change_status(
        session,
        enrollment,
        ACTIVE,
        actor=actor,
        action="enrollment.activate",
        stripe_subscription_id=subscription_id or enrollment.stripe_subscription_id,
        stripe_payment_intent_id=payment_intent_id or enrollment.stripe_payment_intent_id,
        stripe_invoice_id=invoice_id or enrollment.stripe_invoice_id,
        provisional_expires_at=None,
        pipeline_state="done",
        action_client_secret=None,
        action_url=None,
    )
    payee = payee_of(session, enrollment)
    queue_email(
        session,
        template="booking_confirmation",
        recipient=payee.email,
        context=email_context(session, enrollment),
        dedupe_key=f"booking_confirmation:{enrollment.id}",
    )
    return True


def fail_enrollment(session: Session, enrollment: Enrollment, *, reason: str, actor: str) -> bool:
    """A hold → failed with a reason the parent can read; alerts the admin. False if not a hold."""
    if enrollment.status not in HOLD_STATUSES:
        return False
    change_status(
        session,
        enrollment,
        FAILED,
        actor=actor,
        action="enrollment.fail",
        failure_reason=reason[:500],
        provisional_expires_at=None,
        pipeline_state="failed",
        action_client_secret=None,
        action_url=None,
    )
    queue_admin_alert(
        session, subject=f"Booking {enrollment.id} failed", message=reason, dedupe_key=f"booking_failed:{enrollment.id}"
    )
    return True


def expire_hold(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """A hold → `expired` (slot free again); the parent gets `hold_expired`, the admin an alert.
    The caller undoes what Stripe holds for it. False when it is no longer a hold."""
    if enrollment.status not in HOLD_STATUSES:
        return False
    context = email_context(session, enrollment)
    change_status(
        session,
        enrollment,
        EXPIRED,
        actor=actor,
        action="enrollment.expire",
        pipeline_state="expired",
        action_client_secret=None,
        action_url=None,
    )
    notify(
        session,
        family=payee_of(session, enrollment),
        template="hold_expired",
        context=context,
        dedupe_key=f"hold_expired:{enrollment.id}",
        admin_subject=f"Hold {enrollment.id} expired",
        admin_message=f"{context['student_name']}'s hold on {context['weekday']} {context['time']} with "
        f"{context['teacher_name']} expired.",
    )
    return True


def holds_past_expiry(session: Session, *, status: str, now: datetime | None = None) -> list[int]:
    """Ids of holds of `status` past their expiry (the job re-reads Stripe for action_required ones)."""
    now = now or utcnow()
    return list(
        session.exec(select(Enrollment.id).where(Enrollment.status == status, Enrollment.provisional_expires_at <= now)).all()
    )


def expire_provisional_holds(
    session: Session, *, now: datetime | None = None, actor: str = "worker", spare: frozenset[int] = frozenset()
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
    return change_status(
        session,
        enrollment,
        CANCELLED,
        actor=actor,
        action="enrollment.cancel",
        cancel_reason=reason,
        provisional_expires_at=None,
        end_date=max(enrollment.start_date, studio_today()),
    )


def stale_provisionals(session: Session, *, older_than: timedelta, now: datetime | None = None) -> list[Enrollment]:
    """Holds with no pipeline progress for `older_than` (reconciliation re-runs a lost task)."""
    now = now or utcnow()
    return list(
        session.exec(
            select(Enrollment).where(
                Enrollment.status.in_(HOLD_STATUSES),
                Enrollment.updated_at <= now - older_than,
                Enrollment.provisional_expires_at > now,
            )
        ).all()
    )


def awaiting_payment_method(session: Session, payee_id: int) -> list[Enrollment]:
    """A family's provisional enrollments whose pipeline waits for a card."""
    return list(
        session.exec(
            select(Enrollment)
            .join(Student, Student.id == Enrollment.student_id)
            .where(Student.payee_id == payee_id, Enrollment.status == PROVISIONAL)
        ).all()
    )
