"""The Stripe side of a family's changes to a running booking (`models.changes`).

Cancelling at the end of the paid period is asked of Stripe while the caller waits (the parent's
request, the admin's command), between two units of work and never inside one: the booking is
read and checked under its lock, Stripe is told to stop renewing (`cancel_at_period_end`), and
only once Stripe has said so — with the end of the period paid for — is the enrollment marked,
so what the answer says is what Stripe holds. Stripe unreachable: nothing is marked, the
request is a 502 and may simply be repeated (Stripe's own answer is idempotent). A lost answer
after Stripe said yes heals itself: the nightly reconciliation reads `cancel_at_period_end` on
the subscription (`workers.webhook_events.sync_subscription_state`).

A move charges nothing: once it has committed, the `move_subscription` task points the
subscription's metadata at the enrollment that continues the booking.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from models import changes
from models.db import after_commit, session_scope
from models.enrollment import Enrollment
from workers.payments import PaymentProviderError
from workers.stripe_gateway import StripeGateway, StripeGatewayError, StripeNotConfigured
from workers.stripe_shapes import subscription_period_end


def cancel_booking(enrollment_id: int, *, actor: str, payee_id: int | None = None) -> Enrollment:
    """Cancel a booking as a family does (`payee_id`: only that family's; NotFound for another's):
    a hold now, a weekly or monthly booking at the end of its paid period; a booking already
    ending or over is answered as it is (so repeating the request gives the same answer).
    Conflict (`contact-studio`) for what only the studio ends; PaymentProviderError (502) when
    Stripe cannot be asked, with nothing changed. Returns the enrollment as it now is."""
    from workers.tasks import cancel_subscription

    with session_scope() as session:
        how, enrollment = changes.request_cancellation(session, enrollment_id, actor=actor, payee_id=payee_id)
        if how == changes.CANCEL_NOW:  # what Stripe may hold for the hold is undone after commit
            after_commit(session, functools.partial(cancel_subscription, enrollment_id))
        subscription_id = enrollment.stripe_subscription_id
    if how != changes.CANCEL_AT_PERIOD_END or not subscription_id:
        return enrollment
    try:
        subscription = StripeGateway().set_cancel_at_period_end(
            subscription_id, key=f"subscription-{subscription_id}-cancel-at-period-end"
        )
    except StripeNotConfigured as error:
        raise PaymentProviderError(str(error), type="payments-unavailable") from None
    except StripeGatewayError as error:
        raise PaymentProviderError(f"Stripe: {error}") from None
    if subscription.get("status") in ("canceled", "incomplete_expired"):
        from workers.webhook_events import sync_subscription_state

        sync_subscription_state(subscription, source="cancel request")  # it ended already: so does the booking
    else:
        period_end = subscription_period_end(subscription)
        if not period_end:
            raise PaymentProviderError(f"Stripe named no end of the paid period for subscription {subscription_id}")
        with session_scope() as session:
            changes.record_cancel_at_period_end(
                session, enrollment_id, period_end=datetime.fromtimestamp(period_end, UTC), actor=actor
            )
    with session_scope(write=False) as session:
        return session.get(Enrollment, enrollment_id)
