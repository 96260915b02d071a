"""Huey tasks. Each takes ids, runs one unit of work, and is enqueued only after the caller's commit.

The public entry points other layers enqueue (keep these names and signatures):
- `book_enrollment(enrollment_id)`      the Stripe booking pipeline of a provisional enrollment
- `cancel_subscription(enrollment_id)`  cancel the Stripe side of a cancelled enrollment
- `send_email(email_id)`                send one EmailLog row (dispatched automatically after commit)
- `process_stripe_event(event_id)`      act on a stored StripeEvent row (local id)
"""

from __future__ import annotations

import logging

from models import outbox
from workers.app import huey

log = logging.getLogger(__name__)


@huey.task()
def book_enrollment(enrollment_id: int) -> None:
    """Run the booking pipeline for one enrollment (filled in by the workers issue)."""
    raise NotImplementedError("booking pipeline not built yet")


@huey.task()
def cancel_subscription(enrollment_id: int) -> None:
    """Cancel the Stripe subscription of a cancelled enrollment (filled in by the workers issue)."""
    raise NotImplementedError("subscription cancellation not built yet")


@huey.task()
def send_email(email_id: int) -> None:
    """Send one queued email (filled in by the workers issue)."""
    raise NotImplementedError("email sending not built yet")


@huey.task()
def process_stripe_event(event_id: int) -> None:
    """Process one stored Stripe event (filled in by the workers issue)."""
    raise NotImplementedError("webhook processing not built yet")


outbox.set_email_dispatcher(lambda email_id: send_email(email_id))
