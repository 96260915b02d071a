"""A billed enrollment after its first payment: renewals that fail (past_due, a grace period,
then cancelled for non-payment), renewals the bank wants the parent to authenticate, Stripe
pausing and resuming collection, and the family's Stripe customer deleted under it. The
workers call these from Stripe's webhooks and the periodic dunning and reconciliation jobs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from models.audit import change_audited
from models.base import utcnow
from models.billing import payee_by_customer
from models.config import get_settings
from models.enrollment import (
    ACTIVE,
    CANCELLED,
    LIVE_STATUSES,
    PAST_DUE,
    PAUSED,
    Enrollment,
    cancel_enrollment,
    change_status,
    email_context,
    payee_of,
)
from models.outbox import notify, queue_admin_alert, queue_email
from models.payment_action import PaymentAction
from models.people import Payee, Student


def mark_past_due(
    session: Session, enrollment: Enrollment, *, actor: str, now: datetime | None = None, action: PaymentAction | None = None
) -> bool:
    """active → past_due on a failed renewal; queues `payment_failed` (or, when the bank wants
    the parent to authenticate the renewal, `payment_action_required` with the link) and an
    admin alert."""
    if enrollment.status != ACTIVE:
        return False
    now = now or utcnow()
    change_status(
        session,
        enrollment,
        PAST_DUE,
        actor=actor,
        action="enrollment.past_due",
        past_due_since=now,
        action_client_secret=action.client_secret if action else None,
        action_url=action.url if action else None,
    )
    payee = payee_of(session, enrollment)
    context = email_context(session, enrollment)
    context["grace_days"] = get_settings().DUNNING_GRACE_DAYS
    dedupe_key = f"payment_failed:{enrollment.id}:{now:%Y%m%d}"
    subject = f"Payment failed for enrollment {enrollment.id}"
    message = (
        f"{payee.name} ({payee.email}): payment for {context['student_name']} failed; slot held {context['grace_days']} days."
    )
    if action is None:
        notify(
            session,
            family=payee,
            template="payment_failed",
            context=context,
            dedupe_key=dedupe_key,
            admin_subject=subject,
            admin_message=message,
        )
    else:  # the family's email carries the link, under its own (daily) key
        _queue_renewal_action_email(session, enrollment, action, now=now)
        queue_admin_alert(session, subject=subject, message=message, dedupe_key=dedupe_key)
    return True


def _queue_renewal_action_email(session: Session, enrollment: Enrollment, action: PaymentAction, *, now: datetime) -> None:
    context = email_context(session, enrollment) | {
        "grace_days": get_settings().DUNNING_GRACE_DAYS,
        "action_url": action.url,
        "renewal": True,
    }
    queue_email(
        session,
        template="payment_action_required",
        recipient=payee_of(session, enrollment).email,
        context=context,
        dedupe_key=f"payment_action_required:{enrollment.id}:{now:%Y%m%d}",
    )


def require_renewal_action(
    session: Session, enrollment: Enrollment, *, action: PaymentAction, actor: str, now: datetime | None = None
) -> bool:
    """A renewal the bank wants the parent to authenticate: active → past_due, or a past_due
    enrollment (its failed-payment event came first) gets the link. Either way the parent gets
    `payment_action_required` with the link, once a day at most. False for other statuses."""
    now = now or utcnow()
    if enrollment.status == ACTIVE:
        return mark_past_due(session, enrollment, actor=actor, now=now, action=action)
    if enrollment.status != PAST_DUE:
        return False
    if enrollment.action_client_secret != action.client_secret:
        change_audited(
            session,
            enrollment,
            actor=actor,
            action="enrollment.action_required",
            action_client_secret=action.client_secret,
            action_url=action.url,
            updated_at=now,
        )
    _queue_renewal_action_email(session, enrollment, action, now=now)
    return True


def mark_paid(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """past_due → active when the invoice got paid within the grace period."""
    if enrollment.status != PAST_DUE:
        return False
    change_status(
        session,
        enrollment,
        ACTIVE,
        actor=actor,
        action="enrollment.paid",
        past_due_since=None,
        action_client_secret=None,
        action_url=None,
    )
    return True


def mark_paused(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """active or past_due → paused: Stripe paused the subscription (or its collection). The slot
    stays the family's; no lessons are shown. False when there is nothing to change."""
    if enrollment.status not in (ACTIVE, PAST_DUE):
        return False
    change_status(session, enrollment, PAUSED, actor=actor, action="enrollment.pause", past_due_since=None)
    return True


def mark_resumed(session: Session, enrollment: Enrollment, *, actor: str) -> bool:
    """paused → active when Stripe resumed the subscription. False if not paused."""
    if enrollment.status != PAUSED:
        return False
    change_status(session, enrollment, ACTIVE, actor=actor, action="enrollment.resume")
    return True


def dunning_overdue(session: Session, *, now: datetime | None = None) -> list[Enrollment]:
    """past_due enrollments whose grace period is over."""
    now = now or utcnow()
    limit = now - timedelta(days=get_settings().DUNNING_GRACE_DAYS)
    return list(session.exec(select(Enrollment).where(Enrollment.status == PAST_DUE, Enrollment.past_due_since <= limit)).all())


def cancel_for_nonpayment(session: Session, enrollment: Enrollment, *, actor: str, now: datetime | None = None) -> bool:
    """past_due past its grace → cancelled, slot free; the parent (`payment_failed`, final) and
    the admin are told. False if the enrollment is no longer past_due (paid meanwhile)."""
    if enrollment.status != PAST_DUE:
        return False
    context = email_context(session, enrollment)
    cancel_enrollment(session, enrollment, reason="not paid within the grace period", actor=actor)
    context |= {"grace_days": get_settings().DUNNING_GRACE_DAYS, "final_notice": True, "status": CANCELLED}
    payee = payee_of(session, enrollment)
    notify(
        session,
        family=payee,
        template="payment_failed",
        context=context,
        dedupe_key=f"dunning_cancelled:{enrollment.id}",
        admin_subject=f"Enrollment {enrollment.id} cancelled for non-payment",
        admin_message=f"{payee.name} ({payee.email}) did not pay for {context['student_name']} within "
        f"{context['grace_days']} days; {context['weekday']} {context['time']} with "
        f"{context['teacher_name']} is free again.",
    )
    return True


def enrollments_by_subscription(session: Session, subscription_id: str) -> list[Enrollment]:
    """Enrollments billed by a Stripe subscription (normally one)."""
    return list(session.exec(select(Enrollment).where(Enrollment.stripe_subscription_id == subscription_id)).all())


def billed_enrollments(session: Session) -> list[Enrollment]:
    """Active, past-due and paused enrollments billed through Stripe (for reconciliation)."""
    return list(
        session.exec(
            select(Enrollment)
            .where(
                Enrollment.status.in_((ACTIVE, PAST_DUE, PAUSED)),
                Enrollment.offline.is_(False),
                Enrollment.stripe_subscription_id.is_not(None),
            )
            .order_by(Enrollment.id)
        ).all()
    )


def billed_enrollment_id(
    session: Session,
    *,
    enrollment_id: int | None = None,
    payment_intent_id: str | None = None,
    invoice_id: str | None = None,
    subscription_id: str | None = None,
) -> int | None:
    """The local enrollment a Stripe payment belongs to, from what Stripe named: our own
    `metadata.enrollment_id` (only when that enrollment exists here), else the enrollment
    linked to the PaymentIntent, the first invoice or the subscription. None when unknown."""
    if enrollment_id is not None and session.get(Enrollment, enrollment_id) is not None:
        return enrollment_id
    for column, value in (
        (Enrollment.stripe_payment_intent_id, payment_intent_id),
        (Enrollment.stripe_invoice_id, invoice_id),
        (Enrollment.stripe_subscription_id, subscription_id),
    ):
        if value:
            found = session.exec(select(Enrollment.id).where(column == value).order_by(Enrollment.id.desc())).first()
            if found is not None:
                return found
    return None


def forget_stripe_customer(session: Session, *, customer_id: str, actor: str) -> Payee | None:
    """The Stripe customer was deleted: its payee forgets it and its default card (audited),
    so the next booking or card setup makes a new customer. When the family had live
    enrollments billed by subscriptions (gone with the customer), the admin is told once.
    Returns the payee, or None when no payee had this customer."""
    payee = payee_by_customer(session, customer_id)
    if payee is None:
        return None
    change_audited(
        session,
        payee,
        actor=actor,
        action="payee.stripe_customer_deleted",
        stripe_customer_id=None,
        stripe_payment_method_id=None,
        stripe_customer_generation=payee.stripe_customer_generation + 1,
        updated_at=utcnow(),
    )
    billed = session.exec(
        select(Enrollment.id)
        .join(Student, Student.id == Enrollment.student_id)
        .where(
            Student.payee_id == payee.id,
            Enrollment.status.in_(LIVE_STATUSES),
            Enrollment.offline.is_(False),
            Enrollment.stripe_subscription_id.is_not(None),
        )
        .order_by(Enrollment.id)
    ).all()
    if billed:
        ids = ", ".join(str(enrollment_id) for enrollment_id in billed)
        queue_admin_alert(
            session,
            subject=f"Stripe customer of {payee.name} deleted: {len(billed)} billed enrollment(s)",
            message=f"The Stripe customer {customer_id} of {payee.name} ({payee.email}) was deleted, and with it the "
            f"subscriptions billing enrollment(s) {ids}: nothing will be charged for them any more. The "
            f"family's next booking or card setup creates a new customer; re-enrol them or cancel the enrollments.",
            dedupe_key=f"customer_deleted:{customer_id}",
        )
    return payee
