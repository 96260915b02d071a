"""A first payment waiting for the parent's 3-D Secure check: recognising it (`awaiting_parent`),
recording it (`await_parent`, `action_required`), reading a subscription's first payment
(`subscription_outcome`), and Stripe's later answer (`check_parent_action`: activate, keep
waiting, or expire the hold now).
"""

from __future__ import annotations

import logging

from models import enrollment as enrollment_ops
from models.db import session_scope
from models.enrollment import ACTION_REQUIRED, PROVISIONAL
from models.payment_action import PaymentAction, await_payment_action
from workers.booking_activation import activate_or_undo, undo_late_charge
from workers.pipeline_steps import ACTOR, Booking
from workers.stripe_gateway import StripeGateway, TerminalStripeError
from workers.stripe_shapes import object_id, payment_client_secret

# The pipeline's lines keep its logger's name.
log = logging.getLogger("workers.pipeline")


def awaiting_parent(intent: dict | None) -> bool:
    """A PaymentIntent waiting for the parent's 3-D Secure check: `requires_action` (on-session,
    localstripe), or left `requires_payment_method` by an off-session `authentication_required`."""
    if not intent:
        return False
    if intent.get("status") in ("requires_action", "requires_confirmation"):
        return True
    error = intent.get("last_payment_error") or {}
    return intent.get("status") == "requires_payment_method" and "authentication_required" in (
        error.get("code"),
        error.get("decline_code"),
    )


def await_parent(
    gateway: StripeGateway, enrollment_id: int, *, intent: dict, invoice: dict | None = None, subscription_id: str | None = None
) -> str:
    """The first payment waits for the parent: `action_required`, with what the app and the email
    need. If the hold ended meanwhile, what Stripe holds is cancelled instead."""
    secret = payment_client_secret(invoice, intent)
    if not secret:
        raise TerminalStripeError(f"payment {intent.get('id')} needs authentication but has no client secret")
    action = PaymentAction(client_secret=secret, url=(invoice or {}).get("hosted_invoice_url"))
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        waiting = enrollment is not None and enrollment.status == ACTION_REQUIRED
        if enrollment is not None and enrollment.status == PROVISIONAL:
            waiting = await_payment_action(
                session,
                enrollment,
                actor=ACTOR,
                action=action,
                subscription_id=subscription_id,
                invoice_id=(invoice or {}).get("id"),
                payment_intent_id=intent.get("id"),
            )
    if waiting:
        return "action_required"
    # The hold ended meanwhile: nothing may be paid on it. A subscription's invoice is voided
    # (its PaymentIntent is the invoice's, Stripe refuses to cancel it alone).
    undo_late_charge(
        gateway,
        enrollment_id,
        subscription_id=subscription_id,
        invoice_id=(invoice or {}).get("id"),
        payment_intent_id=None if subscription_id else intent["id"],
    )
    return "undone"


def subscription_outcome(gateway: StripeGateway, enrollment_id: int, subscription: dict) -> tuple[str, str | None, str | None]:
    """Where a (new or found) subscription stands: ("paid" | "waiting", invoice id, PaymentIntent id).
    A declined first payment cancels it and raises a terminal error."""
    invoice_id = object_id(subscription.get("latest_invoice"))
    if subscription.get("status") in ("active", "trialing"):
        return "paid", invoice_id, None
    if subscription.get("status") == "incomplete" and invoice_id:
        invoice, intent = gateway.first_payment(invoice_id)
        if awaiting_parent(intent):
            return (
                await_parent(gateway, enrollment_id, intent=intent, invoice=invoice, subscription_id=subscription["id"]),
                invoice_id,
                intent["id"],
            )
    gateway.cancel_subscription(subscription["id"])
    raise TerminalStripeError(f"the first payment was declined (subscription {subscription.get('status')})")


def check_parent_action(gateway: StripeGateway, booking: Booking) -> str:
    """An `action_required` booking: has the parent's check passed in Stripe? Then activate.
    Otherwise it keeps waiting (a failed check may be retried by the parent; the window's end
    expires it)."""
    subscription_id, payment_intent_id, invoice_id = booking.subscription_id, None, booking.invoice_id
    if booking.subscription_id:
        subscription = gateway.retrieve_subscription(booking.subscription_id)
        if subscription.get("status") in ("incomplete_expired", "canceled"):
            # Stripe gave up on the first invoice (23 hours) or it was cancelled: nothing can be
            # paid any more, the slot is freed now rather than at the window's end.
            return _expire_now(gateway, booking, reason=f"subscription {subscription.get('status')}")
        if subscription.get("status") not in ("active", "trialing"):
            return "action_required"
    elif booking.payment_intent_id:
        intent = gateway.retrieve_payment_intent(booking.payment_intent_id)
        if intent.get("status") == "canceled":
            return _expire_now(gateway, booking, reason="payment cancelled")
        if intent.get("status") != "succeeded":
            return "action_required"
        payment_intent_id = intent["id"]
    else:
        raise TerminalStripeError("the booking waits for a payment it has no record of")
    return activate_or_undo(
        gateway,
        booking.enrollment_id,
        subscription_id=subscription_id,
        payment_intent_id=payment_intent_id,
        invoice_id=invoice_id,
    )


def _expire_now(gateway: StripeGateway, booking: Booking, *, reason: str) -> str:
    """The payment the booking waits for can no longer succeed: the hold expires now (parent
    and admin told, as at the window's end) and what Stripe holds is undone."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, booking.enrollment_id)
        expired = enrollment is not None and enrollment_ops.expire_hold(session, enrollment, actor=ACTOR)
    if expired:
        log.info("booking %s expired early: %s", booking.enrollment_id, reason)
        undo_late_charge(
            gateway,
            booking.enrollment_id,
            subscription_id=booking.subscription_id,
            invoice_id=booking.invoice_id,
            payment_intent_id=None if booking.subscription_id else booking.payment_intent_id,
        )
    return "expired" if expired else "skipped"
