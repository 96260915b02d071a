"""A first payment waiting for the parent's 3-D Secure check: the booking `action_required`.

The bank wants the parent to authenticate the first payment (a subscription's first invoice,
or the semester's off-session charge): the hold is extended — ACTION_REQUIRED_HOURS, less for
a subscription — and the parent is sent the link. The booking pipeline decides what follows
(`workers/payment_authentication.py`): authenticated → active, the window over → expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from models.base import utcnow
from models.config import get_settings
from models.enrollment import ACTION_REQUIRED, PROVISIONAL, Enrollment, change_status, email_context, payee_of
from models.outbox import queue_email

# Stripe expires an incomplete subscription (and voids its first invoice) 23 hours after it
# was made: a booking waiting for its first payment's 3-D Secure check waits at most this long.
SUBSCRIPTION_ACTION_HOURS = 22.0


@dataclass(frozen=True)
class PaymentAction:
    """A payment waiting for the parent: Stripe's client secret for Stripe.js, and a page to pay on."""

    client_secret: str
    url: str | None = None


def await_payment_action(
    session: Session,
    enrollment: Enrollment,
    *,
    actor: str,
    action: PaymentAction,
    subscription_id: str | None = None,
    invoice_id: str | None = None,
    payment_intent_id: str | None = None,
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
    change_status(
        session,
        enrollment,
        ACTION_REQUIRED,
        actor=actor,
        action="enrollment.action_required",
        provisional_expires_at=now + timedelta(hours=hours),
        stripe_subscription_id=subscription_id or enrollment.stripe_subscription_id,
        stripe_invoice_id=invoice_id or enrollment.stripe_invoice_id,
        stripe_payment_intent_id=payment_intent_id or enrollment.stripe_payment_intent_id,
        action_client_secret=action.client_secret,
        action_url=action.url,
        pipeline_state="action_required",
    )
    context = email_context(session, enrollment) | {"action_url": action.url, "renewal": False}
    queue_email(
        session,
        template="payment_action_required",
        recipient=payee_of(session, enrollment).email,
        context=context,
        dedupe_key=f"payment_action_required:{enrollment.id}",
    )
    return True
