"""How a booking's billing ends: `activate_or_undo` makes it active, or — the hold ended while
Stripe was charging — takes back what Stripe holds (`undo_late_charge`); `undo_orphan_charges`
does the same for a booking that ended while Stripe may still hold something for it.
"""

from __future__ import annotations

from models import enrollment as enrollment_ops
from models.db import session_scope
from models.enrollment import HOLD_STATUSES
from models.outbox import queue_admin_alert
from workers.pipeline_steps import ACTOR, preload
from workers.stripe_gateway import StripeGateway
from workers.stripe_shapes import object_id


def undo_late_charge(
    gateway: StripeGateway,
    enrollment_id: int,
    *,
    subscription_id: str | None,
    payment_intent_id: str | None,
    invoice_id: str | None = None,
) -> bool:
    """The hold ended (expired, cancelled, failed) while Stripe was charging or waiting for the
    parent: cancel what Stripe holds and take back what it took (a subscription's first invoice
    is paid on creation: cancelling alone would keep the money). The admin is told when money
    was given back. True when something was refunded."""
    refunded = False
    if subscription_id:
        gateway.cancel_subscription(subscription_id)
    if invoice_id:  # unpaid: voided (its hosted page too); paid: refunded
        if gateway.void_open_invoice(invoice_id).get("status") == "paid":
            refunded = gateway.refund_invoice(invoice_id) is not None
    if payment_intent_id:
        intent = gateway.cancel_payment_intent(payment_intent_id)
        if intent.get("status") == "succeeded":
            gateway.refund_payment_intent(payment_intent_id, key=f"{payment_intent_id}-refund")
            refunded = True
    if refunded:
        with session_scope() as session:
            queue_admin_alert(
                session,
                subject=f"Booking {enrollment_id} was charged after its hold ended",
                message=f"The charge ({subscription_id or payment_intent_id}) was refunded automatically; no action needed.",
                dedupe_key=f"late_charge:{enrollment_id}",
            )
    return refunded


def activate_or_undo(
    gateway: StripeGateway,
    enrollment_id: int,
    *,
    subscription_id: str | None,
    payment_intent_id: str | None,
    invoice_id: str | None,
) -> str:
    """Billing is set up: `active` (with the confirmation), or — the hold ended while Stripe was
    charging — the charge is taken back (`undone`)."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is not None and enrollment.status in HOLD_STATUSES:
            preload(session, enrollment, with_slot=True)  # the confirmation's context
        activated = enrollment is not None and enrollment_ops.activate_enrollment(
            session,
            enrollment,
            actor=ACTOR,
            subscription_id=subscription_id,
            payment_intent_id=payment_intent_id,
            invoice_id=invoice_id,
        )
        already = (
            enrollment is not None
            and enrollment.status not in HOLD_STATUSES
            and enrollment.pipeline_state == "done"
            and (
                (subscription_id and enrollment.stripe_subscription_id == subscription_id)
                or (payment_intent_id and enrollment.stripe_payment_intent_id == payment_intent_id)
            )
        )
    if activated or already:
        return "active"
    undo_late_charge(
        gateway, enrollment_id, subscription_id=subscription_id, payment_intent_id=payment_intent_id, invoice_id=invoice_id
    )
    return "undone"


def undo_orphan_charges(enrollment_id: int) -> str:
    """A booking that ended (hold expired, failed, cancelled before it was billed) while Stripe
    may still hold something for it: a worker may have died after Stripe charged, Stripe's answer
    was lost, or a payment waits for a 3-D Secure check nobody will do now. Every live
    subscription, taken or waiting payment carrying this enrollment's id is cancelled and what
    was taken refunded — the ones linked to it too, since it was never billed. For a booking
    that was billed and then cancelled only unlinked ones count (its own subscription is
    `cancel_subscription`'s). `undone` or `clean`; `skipped` while the enrollment is live (the
    pipeline owns it)."""
    from models.enrollment import CANCELLED, EXPIRED, FAILED, LIVE_STATUSES, Enrollment

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None or enrollment.status in LIVE_STATUSES:
            return "skipped"
        customer_id = enrollment_ops.payee_of(session, enrollment).stripe_customer_id
        never_billed = enrollment.status in (EXPIRED, FAILED) or (
            enrollment.status == CANCELLED and enrollment.pipeline_state != "done"
        )
        linked = set() if never_billed else {enrollment.stripe_subscription_id, enrollment.stripe_payment_intent_id} - {None}
    if not customer_id:
        return "clean"
    gateway = StripeGateway()
    subscription = gateway.find_subscription(customer_id, enrollment_id)
    payment = gateway.find_payment(
        customer_id,
        enrollment_id,
        statuses=("succeeded", "processing", "requires_capture")
        + (("requires_action", "requires_confirmation", "requires_payment_method") if never_billed else ()),
    )
    subscription = subscription if subscription and subscription["id"] not in linked else None
    payment = payment if payment and payment["id"] not in linked else None
    if subscription is None and payment is None:
        return "clean"
    latest = (subscription or {}).get("latest_invoice")
    undo_late_charge(
        gateway,
        enrollment_id,
        subscription_id=subscription["id"] if subscription else None,
        payment_intent_id=payment["id"] if payment else None,
        invoice_id=object_id(latest),
    )
    return "undone"
