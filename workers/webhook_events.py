"""Acting on stored Stripe events.

Events arrive duplicated and in any order, and their payload is a snapshot of the past:
every handler re-reads the object from Stripe and acts on its *current* state, through the
same domain operations the rest of the system uses (each guarded by the enrollment's
status). So any order of deliveries ends in the same state, and a replay changes nothing.
The booking itself is only ever decided by the booking pipeline: events about it just
re-run the pipeline (idempotent: Stripe replays the first answer to its keys).

Handlers enqueue nothing: they return an `Outcome` naming the bookings to resume and the
ended bookings whose charges to check, and the `process_stripe_event` task enqueues those
(`workers.tasks.enqueue_follow_ups`). So this module imports no task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from models import billing, dunning, logs
from models import changes as self_service
from models import enrollment as enrollment_ops
from models.billing import StripeEvent
from models.db import session_scope
from models.enrollment import ACTION_REQUIRED, ACTIVE, HOLD_STATUSES, LIVE_STATUSES, PAST_DUE, PAUSED, Enrollment
from models.outbox import add_dead_letter, queue_admin_alert
from models.payment_action import PaymentAction
from workers import metrics
from workers.money_events import MONEY_HANDLERS
from workers.payment_authentication import awaiting_parent
from workers.pipeline import resume_bookings_of_customer
from workers.stripe_gateway import StripeGateway, TerminalStripeError, note_event_api_version
from workers.stripe_shapes import (
    enrollment_id_of,
    invoice_subscription_id,
    object_id,
    payment_client_secret,
    subscription_period_end,
)

log = logging.getLogger(__name__)
ACTOR = "worker"


@dataclass(frozen=True)
class Outcome:
    """How processing an event ended, and the work it leaves: `resume` — held bookings whose
    pipeline re-runs (`book_enrollment`); `undo` — ended bookings whose Stripe charges are
    checked and taken back (`undo_orphan_charges`)."""

    status: str
    resume: tuple[int, ...] = ()
    undo: tuple[int, ...] = ()


@dataclass
class Sync:
    """What `sync_subscription_state` changed (for logs and the reconciliation report) and the
    bookings waiting for a 3-D Secure check whose subscription is now paid (to resume)."""

    changes: list[str] = field(default_factory=list)
    resume: list[int] = field(default_factory=list)


def sync_subscription_state(subscription: dict, *, source: str) -> Sync:
    """Bring the enrollments billed by `subscription` in line with its current Stripe status."""
    result = Sync()
    changes = result.changes
    status = subscription.get("status")
    # Paused: the subscription's own `paused` status (a trial ended without a card, or
    # `customer.subscription.paused`), or collection paused on a live one (`pause_collection`).
    paused = status == "paused" or (status in ("active", "trialing", "past_due") and bool(subscription.get("pause_collection")))
    with session_scope() as session:
        for row in dunning.enrollments_by_subscription(session, subscription["id"]):
            enrollment = enrollment_ops.lock_enrollment(session, row.id)
            if enrollment.status == ACTION_REQUIRED:
                # The first payment waits for the parent: the pipeline reads Stripe and decides.
                if status in ("active", "trialing", "incomplete_expired", "canceled"):
                    result.resume.append(enrollment.id)
                    changes.append(f"enrollment {enrollment.id}: first payment {status}, booking resumed")
                continue
            if paused:
                if dunning.mark_paused(session, enrollment, actor=ACTOR):
                    changes.append(f"enrollment {enrollment.id}: paused (subscription {status}, collection paused)")
                continue
            if enrollment.status == PAUSED and status in ("active", "trialing", "past_due"):
                dunning.mark_resumed(session, enrollment, actor=ACTOR)
                changes.append(f"enrollment {enrollment.id}: resumed (subscription {status})")
            period_end = subscription_period_end(subscription) if subscription.get("cancel_at_period_end") else None
            if period_end and not enrollment.cancel_at_period_end and status in ("active", "trialing", "past_due"):
                # Stripe will not renew it (asked through us, an answer lost; or in its dashboard).
                end = datetime.fromtimestamp(period_end, UTC)
                self_service.record_cancel_at_period_end(session, enrollment.id, period_end=end, actor=ACTOR)
                changes.append(f"enrollment {enrollment.id}: cancelled at its period end, last lesson {enrollment.end_date}")
            if enrollment.cancel_at_period_end and status in ("canceled", "incomplete_expired"):
                # Ended at its period end, as the family asked: its end date (its last paid lesson) stays.
                if self_service.finish_enrollment(session, enrollment.id, actor=ACTOR):
                    changes.append(f"enrollment {enrollment.id}: ended with its paid period (subscription {status})")
            elif status in ("canceled", "incomplete_expired") and enrollment.status in (ACTIVE, PAST_DUE, PAUSED):
                enrollment_ops.cancel_enrollment(session, enrollment, reason=f"subscription {status} in Stripe", actor=ACTOR)
                queue_admin_alert(
                    session,
                    subject=f"Enrollment {enrollment.id} cancelled: Stripe subscription {status}",
                    message=f"Subscription {subscription['id']} is {status} in Stripe ({source}); the slot is free again.",
                    dedupe_key=f"subscription_ended:{enrollment.id}",
                )
                changes.append(f"enrollment {enrollment.id}: cancelled (subscription {status})")
            elif status in ("past_due", "unpaid") and enrollment.status == ACTIVE:
                dunning.mark_past_due(session, enrollment, actor=ACTOR)
                changes.append(f"enrollment {enrollment.id}: past_due (subscription {status})")
            elif status in ("active", "trialing") and enrollment.status == PAST_DUE:
                dunning.mark_paid(session, enrollment, actor=ACTOR)
                changes.append(f"enrollment {enrollment.id}: active again (subscription {status})")
    return result


def _synced(sync: Sync) -> Outcome:
    return Outcome("processed", resume=tuple(sync.resume))


def on_invoice_paid(gateway: StripeGateway, obj: dict) -> str | Outcome:
    invoice = gateway.retrieve_invoice(obj["id"])
    subscription_id = invoice_subscription_id(invoice)
    if invoice.get("status") != "paid" or not subscription_id:
        return "ignored"
    # This invoice is paid, but an older or newer one may not be: only the subscription says
    # whether the account is in good standing (a late `invoice.paid` of last month's invoice
    # must not clear this month's failure).
    return _synced(sync_subscription_state(gateway.retrieve_subscription(subscription_id), source="invoice paid"))


def on_invoice_payment_failed(gateway: StripeGateway, obj: dict) -> str | Outcome:
    invoice = gateway.retrieve_invoice(obj["id"])
    subscription_id = invoice_subscription_id(invoice)
    if not subscription_id or invoice.get("status") in ("paid", "void", "draft"):
        return "ignored"  # paid since (a later retry worked) or nothing to chase
    _, intent = gateway.first_payment(invoice["id"])
    if awaiting_parent(intent):  # Stripe sends both events when the bank wants the parent: one story
        return on_invoice_payment_action_required(gateway, obj)
    subscription = gateway.retrieve_subscription(subscription_id)
    if subscription.get("status") in ("canceled", "incomplete_expired"):
        return _synced(sync_subscription_state(subscription, source="invoice payment failed"))
    with session_scope() as session:
        for row in dunning.enrollments_by_subscription(session, subscription_id):
            enrollment = enrollment_ops.lock_enrollment(session, row.id)
            if enrollment.status == ACTIVE:
                dunning.mark_past_due(session, enrollment, actor=ACTOR)
    return "processed"


def on_subscription_changed(gateway: StripeGateway, obj: dict) -> Outcome:
    return _synced(sync_subscription_state(gateway.retrieve_subscription(obj["id"]), source="subscription event"))


def on_setup_intent_succeeded(gateway: StripeGateway, obj: dict) -> str | Outcome:
    intent = gateway.retrieve_setup_intent(obj["id"])
    customer, method = intent.get("customer"), intent.get("payment_method")
    customer, method = object_id(customer), object_id(method)
    if intent.get("status") != "succeeded" or not customer or not method:
        return "ignored"
    gateway.set_default_payment_method(customer, method)
    with session_scope() as session:
        payee = billing.payee_by_customer(session, customer)
        if payee is not None:  # our memory of it (`payment_method.detached` forgets it)
            billing.remember_default_card(session, payee.id, method, actor=ACTOR)
    return Outcome("processed", resume=tuple(resume_bookings_of_customer(customer)))


def on_payment_intent(gateway: StripeGateway, obj: dict) -> str | Outcome:
    """A payment of a booking moved: a hold's pipeline re-runs and decides (a 3-D Secure check
    passed, a charge landed); a payment that succeeded for a booking that ended meanwhile is
    taken back. The booking is found by our metadata, or — a subscription's invoice payment
    carries none — by the PaymentIntent id the booking recorded."""
    from sqlmodel import select

    intent = gateway.retrieve_payment_intent(obj["id"])
    enrollment_id = enrollment_id_of(intent)
    with session_scope(write=False) as session:
        if enrollment_id is None:
            enrollment_id = session.exec(select(Enrollment.id).where(Enrollment.stripe_payment_intent_id == intent["id"])).first()
        enrollment = session.get(Enrollment, enrollment_id) if enrollment_id is not None else None
        status = enrollment.status if enrollment is not None else None
    if status in HOLD_STATUSES:  # the pipeline replays its payment step and decides
        return Outcome("processed", resume=(enrollment_id,))
    if status is not None and status not in LIVE_STATUSES and intent.get("status") == "succeeded":
        # Charged after the hold ended: refunded unless it is billed.
        return Outcome("processed", undo=(enrollment_id,))
    return "ignored"


def on_invoice_payment_action_required(gateway: StripeGateway, obj: dict) -> str | Outcome:
    """An invoice's payment needs the parent's 3-D Secure check. A renewal: the enrollment goes
    `past_due` with the `payment_action_required` email and the link (paid within the grace
    period → active again). A first invoice: the booking's pipeline decides."""
    invoice, intent = gateway.first_payment(obj["id"])
    subscription_id = invoice_subscription_id(invoice)
    if not subscription_id or invoice.get("status") != "open" or not awaiting_parent(intent):
        return "ignored"  # paid, voided or failed since: the other events tell
    intent = intent or {}
    secret = payment_client_secret(invoice, intent)
    resume = []
    with session_scope() as session:
        for row in dunning.enrollments_by_subscription(session, subscription_id):
            enrollment = enrollment_ops.lock_enrollment(session, row.id)
            if enrollment.status in HOLD_STATUSES:
                resume.append(enrollment.id)
            elif secret:
                dunning.require_renewal_action(
                    session,
                    enrollment,
                    actor=ACTOR,
                    action=PaymentAction(client_secret=secret, url=invoice.get("hosted_invoice_url")),
                )
    return Outcome("processed", resume=tuple(resume))


HANDLERS: dict[str, Callable[[StripeGateway, dict], str | Outcome]] = {
    "invoice.paid": on_invoice_paid,
    "invoice.payment_succeeded": on_invoice_paid,
    "invoice.payment_failed": on_invoice_payment_failed,
    "invoice.payment_action_required": on_invoice_payment_action_required,
    "customer.subscription.created": on_subscription_changed,
    "customer.subscription.updated": on_subscription_changed,
    "customer.subscription.deleted": on_subscription_changed,
    "customer.subscription.paused": on_subscription_changed,
    "customer.subscription.resumed": on_subscription_changed,
    "setup_intent.succeeded": on_setup_intent_succeeded,
    "payment_intent.succeeded": on_payment_intent,
    "payment_intent.payment_failed": on_payment_intent,
}
HANDLERS.update(MONEY_HANDLERS)  # disputes, refunds, failed card setups, detached cards, deleted customers


def handle(handler: Callable[[StripeGateway, dict], str | Outcome], gateway: StripeGateway, obj: dict) -> Outcome:
    """Run one handler on an event's object; its answer as an Outcome."""
    handled = handler(gateway, obj)
    return handled if isinstance(handled, Outcome) else Outcome(handled)


def _event_object(payload: object) -> object:
    """The event's `data.object` as sent (anything: the signature proves who sent it, not its
    shape); `{}` when the event has no object at all."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if data is None:
        return {}
    obj = data.get("object") if isinstance(data, dict) else data
    return {} if obj is None else obj


def process_event(event_id: int) -> Outcome:
    """Process stored event `event_id` once; returns how it ended and the work it leaves.

    Raises TransientStripeError to be retried; a terminal error marks the event `failed`
    with a dead letter, as does an event of a type we handle whose `data.object` is not an
    object (signed by Stripe or not, no retry would change it)."""
    with session_scope(write=False) as session:
        event = session.get(StripeEvent, event_id)
        if event is None:
            return Outcome("missing")
        if event.status in ("processed", "ignored"):
            return Outcome(event.status)
        event_type, payload, stripe_event_id = event.type, event.payload, event.stripe_event_id
    note_event_api_version(payload.get("api_version") if isinstance(payload, dict) else None)
    handler = HANDLERS.get(event_type)
    obj = _event_object(payload)
    error = None
    outcome = Outcome("ignored")
    if handler is None:
        pass  # a type we do not act on
    elif not isinstance(obj, dict):
        # Signed, yet not the shape of any Stripe event: no retry can help.
        outcome, error = Outcome("failed"), "the event's data.object is not an object"
    elif obj.get("id"):
        try:
            outcome = handle(handler, StripeGateway(), obj)
        except TerminalStripeError as failure:
            outcome, error = Outcome("failed"), str(failure)
    status = outcome.status
    with session_scope() as session:
        event = session.get(StripeEvent, event_id)
        billing.finish_stripe_event(session, event, status=status, error=error)
        if status == "failed":
            add_dead_letter(session, kind="process_stripe_event", payload={"event_id": event_id}, error=error)
    _note_event(stripe_event_id, event_type, payload, status)
    return outcome


def _note_event(stripe_event_id: str, event_type: str, payload: object, status: str) -> None:
    """One `webhook.event` line (Stripe's id, type, how it ended, the lag since Stripe made it)
    and the lag histogram."""
    created = payload.get("created") if isinstance(payload, dict) else None
    lag = max(0.0, time.time() - created) if isinstance(created, (int, float)) and not isinstance(created, bool) else None
    metrics.WEBHOOK_EVENTS.labels(status).inc()
    if lag is not None:
        metrics.WEBHOOK_LAG.observe(lag)
    logs.event(
        log,
        "webhook.event",
        level=logging.WARNING if status == "failed" else logging.INFO,
        stripe_event_id=stripe_event_id,
        type=event_type,
        status=status,
        lag_seconds=round(lag, 3) if lag is not None else None,
    )


def give_up_event(event_id: int, error: str) -> None:
    """The event task ran out of retries (called from the final SIGNAL_ERROR)."""
    with session_scope() as session:
        event = session.get(StripeEvent, event_id)
        if event is None or event.status in ("processed", "ignored"):
            return
        billing.finish_stripe_event(session, event, status="failed", error=f"gave up after retries: {error}")
        add_dead_letter(session, kind="process_stripe_event", payload={"event_id": event_id}, error=error)


__all__ = ["HANDLERS", "Outcome", "Sync", "process_event", "give_up_event", "sync_subscription_state"]
