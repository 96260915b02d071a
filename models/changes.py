"""A family changing a running booking themselves: cancelling it at the end of the paid period,
or moving it to another weekly slot (issue 13) — the admin's `studioctl enrollments` does the same.

Cancelling. A hold (provisional, action_required) is cancelled at once, as the admin's cancel
does. A weekly or monthly booking asks Stripe to stop renewing (`cancel_at_period_end`; the
caller does that, `workers.enrollment_changes`) and, once Stripe has said yes, stays `active`
until its last lesson inside the period paid for (`end_date`, `cancel_at_period_end`); it is
`cancelled` when the subscription ends (`customer.subscription.deleted`) or, whichever comes
first, by the daily job once its end date has passed. The slot is free from the day after.
Semester plans (paid for the whole semester), offline ones and bookings whose payment is in
trouble are the studio's to end: 409 `contact-studio`.

Moving. In one transaction: the target slot is taken through the booking door
(`models.booking`, which checks and locks it exactly as a booking does), the new enrollment
is `active` from its first free lesson (or the date asked) and continues the old one
(`moved_from_id`, the same plan, its Stripe subscription and payments), and the old one ends
with its last lesson before that start. Nothing is charged: the caller points the
subscription's metadata at the new enrollment after commit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.audit import change_audited
from models.base import utcnow
from models.billing import Plan
from models.booking import _new_enrollment
from models.clock import occurrence_start, studio_today
from models.config import get_settings
from models.enrollment import (
    ACTIVE,
    CANCELLED,
    HOLD_STATUSES,
    LIVE_STATUSES,
    OFFERED,
    PAST_DUE,
    PAUSED,
    Enrollment,
    cancel_enrollment,
    change_status,
    email_context,
    get_enrollment,
    lesson_dates,
    lock_enrollment,
    payee_of,
)
from models.errors import Conflict, Invalid, NotFound
from models.outbox import notify
from models.people import Instrument
from models.scheduling import Timeslot

# How a cancel request is carried out (`cancellation_of`).
CANCEL_NOW = "now"  # a hold: cancelled at once (the caller undoes what Stripe may hold for it)
CANCEL_AT_PERIOD_END = "period_end"  # the caller asks Stripe, then `record_cancel_at_period_end`
NOTHING_TO_DO = "nothing"  # already ending at its period end, or over: answered as it is
# Billed statuses after the first payment (a renewal may be in trouble, or collection paused).
BILLED_STATUSES = (ACTIVE, PAST_DUE, PAUSED)
CONTACT_STUDIO = "contact-studio"


def successor_id(session: Session, enrollment_id: int) -> int | None:
    """The enrollment a move made to continue `enrollment_id`, if it was moved."""
    return session.exec(select(Enrollment.id).where(col(Enrollment.moved_from_id) == enrollment_id)).first()


def cancellation_of(session: Session, enrollment: Enrollment) -> str:
    """How cancelling `enrollment` goes (`CANCEL_NOW`, `CANCEL_AT_PERIOD_END`, `NOTHING_TO_DO`),
    or Conflict: 409 `contact-studio` for what only the studio ends, `conflict` for a booking
    that moved (its successor is the one to cancel)."""
    if enrollment.status in HOLD_STATUSES:
        return CANCEL_NOW
    if enrollment.status == OFFERED:
        raise Conflict(f"booking {enrollment.id} is a waiting-list offer: decline it (POST /parent/offers/<id>/decline)")
    if enrollment.status not in LIVE_STATUSES or enrollment.cancel_at_period_end:
        return NOTHING_TO_DO
    moved_to = successor_id(session, enrollment.id)
    if moved_to is not None:
        raise Conflict(f"booking {enrollment.id} moved to booking {moved_to}: cancel that one")
    plan = session.get(Plan, enrollment.plan_id) if enrollment.plan_id else None
    if enrollment.offline or plan is None:
        raise Conflict(f"booking {enrollment.id} is paid outside the app: contact the studio to end it", type=CONTACT_STUDIO)
    if plan.frequency == "semester":
        raise Conflict(
            f"booking {enrollment.id} is on a semester plan, paid for the whole semester: contact the studio to end it",
            type=CONTACT_STUDIO,
        )
    if enrollment.status != ACTIVE or not enrollment.stripe_subscription_id:
        raise Conflict(
            f"booking {enrollment.id} is {enrollment.status}: contact the studio to end it while its payment is settled",
            type=CONTACT_STUDIO,
        )
    return CANCEL_AT_PERIOD_END


def request_cancellation(
    session: Session, enrollment_id: int, *, actor: str, payee_id: int | None = None
) -> tuple[str, Enrollment]:
    """A cancel request for `enrollment_id` (with `payee_id`: only that family's, others are
    NotFound), decided on the row re-read under its lock (`cancellation_of`). A hold is
    cancelled here and now (`cancel_enrollment`: slot free; `enrollment_ending` to the family,
    an alert to the admin): the caller enqueues `cancel_subscription` after commit, which
    undoes what Stripe may hold for it. For `CANCEL_AT_PERIOD_END` nothing is written yet:
    the caller asks Stripe, then calls `record_cancel_at_period_end`."""
    get_enrollment(session, enrollment_id, payee_id=payee_id)
    enrollment = lock_enrollment(session, enrollment_id)
    how = cancellation_of(session, enrollment)
    if how == CANCEL_NOW:
        context = email_context(session, enrollment)
        enrollment = cancel_enrollment(session, enrollment, reason=f"cancelled by {_who(actor)} before it was paid", actor=actor)
        _tell_ending(session, enrollment, context | {"status": CANCELLED}, actor=actor, immediately=True, paid_until=None)
    return how, enrollment


def last_lesson_before(session: Session, enrollment: Enrollment, instant: datetime) -> date | None:
    """The enrollment's last lesson (closures skipped) that starts before `instant`, or None."""
    tz = get_settings().tz
    slot = session.get(Timeslot, enrollment.timeslot_id)
    days = lesson_dates(session, enrollment, last=instant.astimezone(tz).date())
    days = [day for day in days if occurrence_start(day, slot.start_minute, tz) < instant]
    return days[-1] if days else None


def record_cancel_at_period_end(
    session: Session, enrollment_id: int, *, period_end: datetime, actor: str, now: datetime | None = None
) -> Enrollment | None:
    """Stripe will not renew the subscription after `period_end`: the enrollment (re-read under its
    lock) keeps its lessons until the last one starting before then (`end_date`) and is marked
    `cancel_at_period_end`; `enrollment_ending` to the family, an alert to the admin. With no
    lesson left in the paid period it is `cancelled` now. Nothing changes for one already
    marked, or no longer billed (None when there is no such enrollment)."""
    enrollment = lock_enrollment(session, enrollment_id)
    if enrollment is None or enrollment.status not in BILLED_STATUSES or enrollment.cancel_at_period_end:
        return enrollment
    now = now or utcnow()
    context = email_context(session, enrollment)
    last = last_lesson_before(session, enrollment, period_end)
    changes = {"cancel_at_period_end": True, "cancel_reason": f"cancelled by {_who(actor)} at the end of the paid period"}
    action = "enrollment.cancel_at_period_end"
    if last is None or last < studio_today(now):  # no lesson left to give: over now
        change_status(
            session, enrollment, CANCELLED, actor=actor, action=action, end_date=last or enrollment.start_date, **changes
        )
    else:
        change_audited(session, enrollment, actor=actor, action=action, end_date=last, updated_at=now, **changes)
    paid_until = period_end.astimezone(get_settings().tz).date()
    _tell_ending(
        session, enrollment, context | {"status": enrollment.status}, actor=actor, immediately=last is None, paid_until=paid_until
    )
    return enrollment


def _tell_ending(
    session: Session, enrollment: Enrollment, context: dict, *, actor: str, immediately: bool, paid_until: date | None
) -> None:
    end = enrollment.end_date
    context |= {
        "end_date": end.isoformat() if end and not immediately else None,
        "paid_until": paid_until.isoformat() if paid_until else None,
        "immediately": immediately,
    }
    when = "now" if immediately else f"after the lesson of {end.isoformat() if end else '?'}"
    notify(
        session,
        family=payee_of(session, enrollment),
        template="enrollment_ending",
        context=context,
        dedupe_key=f"enrollment_ending:{enrollment.id}",
        admin_subject=f"Booking {enrollment.id} cancelled: ends {when}",
        admin_message=f"{context['payee_name']}'s booking for {context['student_name']} ({context['weekday']} {context['time']} "
        f"with {context['teacher_name']}) was cancelled by {_who(actor)}: it ends {when}, and the slot is free from the day after.",
    )


def finish_enrollment(session: Session, enrollment_id: int, *, actor: str, reason: str | None = None) -> bool:
    """A billed enrollment whose end was set (cancelled at its period end, or moved) → `cancelled`,
    its end date kept, never moved later (the slot may be booked from the day after); an
    enrollment still without an end ends today. Nothing is asked of Stripe: the subscription
    ends by itself, or went with the move. False when it was not live."""
    enrollment = lock_enrollment(session, enrollment_id)
    if enrollment is None or enrollment.status not in BILLED_STATUSES:
        return False
    today = studio_today()
    end = min(enrollment.end_date, today) if enrollment.end_date else today
    end = max(end, enrollment.start_date)
    change_status(
        session,
        enrollment,
        CANCELLED,
        actor=actor,
        action="enrollment.end",
        end_date=end,
        cancel_reason=enrollment.cancel_reason or reason or f"ended on {end.isoformat()}",
    )
    return True


def past_their_end(session: Session, *, today: date) -> list[int]:
    """Billed enrollments whose end date is before `today` and that Stripe no longer renews
    (cancelled at their period end, moved, or offline): the daily job finishes them."""
    return list(
        session.exec(
            select(Enrollment.id)
            .where(
                col(Enrollment.status).in_(BILLED_STATUSES),
                col(Enrollment.end_date) < today,
                sa.or_(col(Enrollment.cancel_at_period_end).is_(True), col(Enrollment.stripe_subscription_id).is_(None)),
            )
            .order_by(col(Enrollment.id))
        ).all()
    )


def finish_past_their_end(session: Session, *, actor: str, today: date | None = None) -> list[int]:
    """The daily job: every enrollment `past_their_end` → cancelled (`finish_enrollment`). Safe twice."""
    today = today or studio_today()
    return [row_id for row_id in past_their_end(session, today=today) if finish_enrollment(session, row_id, actor=actor)]


def _who(actor: str) -> str:
    return "the family" if actor.startswith("payee:") else "the studio" if actor == "admin" else "Stripe"


# Moving --------------------------------------------------------------------------------


def move_enrollment(
    session: Session,
    enrollment: Enrollment,
    *,
    timeslot_id: int,
    start_date: date | None = None,
    actor: str,
    now: datetime | None = None,
) -> Enrollment:
    """Move an active enrollment to another slot (see the module's docstring); returns the new one.

    The old enrollment is locked first (a second move of it waits, then sees the first), then
    the target slot as a booking locks it; SlotTaken (nothing changed) when it is not free
    from the start asked, Invalid for a slot whose teacher does not teach the instrument, a
    start in the past or not on the slot's weekday. The caller, after commit, points the
    Stripe subscription at the new enrollment (`workers.tasks.move_subscription`)."""
    now = now or utcnow()
    old = lock_enrollment(session, enrollment.id)
    if old is None:
        raise NotFound(f"no enrollment {enrollment.id}", field="enrollment_id")
    _check_movable(session, old, timeslot_id=timeslot_id, start_date=start_date, now=now)
    instrument = session.get(Instrument, old.instrument_id)
    plan = session.get(Plan, old.plan_id) if old.plan_id else None
    # The booking door: the target slot's checks, its lock and the date-range rule, as for a
    # booking (the plan is the old one's, kept whether or not it is still offered).
    new = _new_enrollment(
        session,
        student_id=old.student_id,
        timeslot_id=timeslot_id,
        instrument=instrument.name,
        plan=None,
        start_date=start_date,
        status=ACTIVE,
        offline=False,  # a move starts ahead, as a paid booking does (offline is set below)
        now=now,
        actor=actor,
    )
    if plan is not None and plan.frequency == "semester" and new.semester_id != old.semester_id:
        raise Invalid("a semester booking moves within its semester", field="start_date")
    change_audited(
        session,
        new,
        actor=actor,
        action="enrollment.move",
        plan_id=old.plan_id,
        offline=old.offline,
        moved_from_id=old.id,
        stripe_subscription_id=old.stripe_subscription_id,
        stripe_invoice_id=old.stripe_invoice_id,
        stripe_payment_intent_id=old.stripe_payment_intent_id,
        pipeline_state="done",
        discount_percent=old.discount_percent,  # the sibling discount goes with its subscription
        discount_changes=old.discount_changes,
    )
    old_context = email_context(session, old)
    target = session.get(Timeslot, new.timeslot_id)
    last = last_lesson_before(session, old, occurrence_start(new.start_date, target.start_minute, get_settings().tz))
    # The subscription goes with the move: the old enrollment is no longer what Stripe bills.
    reason = f"moved to booking {new.id}"
    if last is None:  # not one lesson before the new start: over now
        changes = {"status": CANCELLED, "end_date": old.start_date}
    elif last < studio_today(now):  # its last lesson is behind it
        changes = {"status": CANCELLED, "end_date": last}
    else:  # lessons until `last`; the daily job (`finish_past_their_end`) ends it after
        changes = {"end_date": last}
    change_audited(
        session,
        old,
        actor=actor,
        action="enrollment.moved",
        cancel_reason=reason,
        stripe_subscription_id=None,
        updated_at=now,
        **changes,
    )
    _tell_moved(session, new, old_context, last)
    return new


def _check_movable(session: Session, old: Enrollment, *, timeslot_id: int, start_date: date | None, now: datetime) -> None:
    if old.status != ACTIVE:
        raise Conflict(f"booking {old.id} is {old.status}: only an active booking can move")
    if old.cancel_at_period_end:
        raise Conflict(f"booking {old.id} is cancelled at the end of its paid period: it cannot move")
    moved_to = successor_id(session, old.id)
    if moved_to is not None:
        raise Conflict(f"booking {old.id} already moved to booking {moved_to}: move that one")
    if timeslot_id == old.timeslot_id:
        raise Invalid(f"booking {old.id} is in timeslot {timeslot_id} already", field="timeslot_id")
    if start_date is not None and start_date < studio_today(now):
        raise Invalid(f"start date {start_date} is in the past", field="start_date")


def _tell_moved(session: Session, new: Enrollment, old_context: dict, last: date | None) -> None:
    context = email_context(session, new) | {
        "old_teacher_name": old_context["teacher_name"],
        "old_weekday": old_context["weekday"],
        "old_time": old_context["time"],
        "old_last_lesson": last.isoformat() if last else None,
    }
    notify(
        session,
        family=payee_of(session, new),
        template="lesson_moved",
        context=context,
        dedupe_key=f"lesson_moved:{new.id}",
        admin_subject=f"Booking {new.moved_from_id} moved to {context['weekday']} {context['time']} (booking {new.id})",
        admin_message=f"{context['payee_name']} moved {context['student_name']}'s {context['instrument']} lessons from "
        f"{old_context['weekday']} {old_context['time']} with {old_context['teacher_name']} to {context['weekday']} "
        f"{context['time']} with {context['teacher_name']} from {context['start_date']}; the old slot is free "
        f"{f'from {(last + timedelta(days=1)).isoformat()}' if last else 'now'}.",
    )
