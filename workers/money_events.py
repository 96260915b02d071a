"""Stripe events about money the studio must know of: disputes, refunds, failed card setups,
detached cards, deleted customers.

As in `workers/webhook_events.py` (which merges `MONEY_HANDLERS` into its `HANDLERS`), every
handler re-reads the object from Stripe and records its *current* state through an
idempotent domain operation of `models.billing` (an upsert by Stripe id, alerts and emails
with dedupe keys): duplicates and any order of deliveries end in the same rows and messages.
An object Stripe no longer knows is `ignored` (nothing to act on), except a customer, whose
absence is what `customer.deleted` announces.

Shapes: the current API (`2026-10-28.endive`: no `invoice` on charges or PaymentIntents,
`charge.refunds` only when expanded) and the 2017 one localstripe speaks (`invoice` on the
PaymentIntent, `refunds` inline). Refunds are always listed through the gateway, so neither
shape's `charge.refunds` is relied on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from models import billing, dunning, money_events
from models import enrollment as enrollment_ops
from models.config import get_settings
from models.db import session_scope
from models.money_events import REFUND_SOURCE_STUDIO
from models.outbox import queue_email
from models.people import Payee
from workers.stripe_gateway import StripeGateway, TerminalStripeError, is_not_found
from workers.stripe_shapes import enrollment_id_of, invoice_subscription_id, object_id

ACTOR = "worker"
# What the card_setup_failed email shows of each hold still waiting for a card.
_HOLD_FIELDS = ("enrollment_id", "student_name", "instrument", "teacher_name", "weekday", "time", "expires_at")


def _reread(fetch: Callable[[str], dict], object_id: str) -> dict | None:
    """The object as Stripe has it now; None when Stripe does not know it (any more)."""
    try:
        return fetch(object_id)
    except TerminalStripeError as error:
        if is_not_found(error):
            return None
        raise


def _timestamp(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _whose_payment(gateway: StripeGateway, charge: dict) -> dict:
    """Who a charge's money belongs to: the family (by the charge's customer) and, when it can
    be found, our enrollment, by the cheapest clue first: our `metadata.enrollment_id` or a
    PaymentIntent / invoice / subscription the enrollment recorded, then the PaymentIntent's
    metadata and (2017 shape) invoice, then the invoice's subscription and its metadata. The
    current API names no invoice on charges or PaymentIntents: a subscription's charge is
    found there by the links we stored only (its first invoice's PaymentIntent is not one)."""
    customer_id = object_id(charge.get("customer"))
    clues: dict[str, Any] = {
        "enrollment_id": enrollment_id_of(charge),
        "payment_intent_id": object_id(charge.get("payment_intent")),
        "invoice_id": object_id(charge.get("invoice")),
        "subscription_id": None,
    }

    def known() -> int | None:
        with session_scope(write=False) as session:
            return dunning.billed_enrollment_id(session, **clues)

    enrollment_id = known()
    if enrollment_id is None and clues["payment_intent_id"]:
        intent = _reread(gateway.retrieve_payment_intent, clues["payment_intent_id"]) or {}
        customer_id = customer_id or object_id(intent.get("customer"))
        clues["enrollment_id"] = clues["enrollment_id"] or enrollment_id_of(intent)
        clues["invoice_id"] = clues["invoice_id"] or object_id(intent.get("invoice"))
        enrollment_id = known()
    if enrollment_id is None and clues["invoice_id"]:
        clues["subscription_id"] = invoice_subscription_id(_reread(gateway.retrieve_invoice, clues["invoice_id"]) or {})
        enrollment_id = known()
        if enrollment_id is None and clues["subscription_id"]:  # a booking that ended before it linked its subscription
            clues["enrollment_id"] = enrollment_id_of(_reread(gateway.retrieve_subscription, clues["subscription_id"]) or {})
            enrollment_id = known()
    with session_scope(write=False) as session:
        payee = billing.payee_by_customer(session, customer_id)
        payee_id = payee.id if payee else None
    return {
        "charge_id": charge.get("id"),
        "payment_intent_id": clues["payment_intent_id"],
        "customer_id": customer_id,
        "payee_id": payee_id,
        "enrollment_id": enrollment_id,
    }


# Disputes --------------------------------------------------------------------------


def on_dispute(gateway: StripeGateway, obj: dict) -> str:
    """`charge.dispute.*`: the dispute recorded as it is now; the admin told when it opens and
    when it is decided."""
    dispute = _reread(gateway.retrieve_dispute, obj["id"])
    if dispute is None:
        return "ignored"
    charge_id = object_id(dispute.get("charge"))
    charge = (_reread(gateway.retrieve_charge, charge_id) if charge_id else None) or {"id": charge_id}
    whose = _whose_payment(gateway, charge | {"payment_intent": charge.get("payment_intent") or dispute.get("payment_intent")})
    with session_scope() as session:
        money_events.record_dispute(
            session,
            stripe_dispute_id=dispute["id"],
            amount_cents=int(dispute.get("amount") or 0),
            currency=dispute.get("currency") or "",
            reason=dispute.get("reason"),
            status=dispute.get("status") or "unknown",
            evidence_due_by=_timestamp((dispute.get("evidence_details") or {}).get("due_by")),
            actor=ACTOR,
            **whose,
        )
    return "processed"


# Refunds ---------------------------------------------------------------------------


def on_refund(gateway: StripeGateway, obj: dict) -> str:
    """`charge.refunded` (a charge) or `charge.refund.updated` / `refund.*` (a refund): every
    refund of the charge recorded as it is now; the admin told of the ones the studio's code
    did not make (ours carry `metadata.source = studio`, see `refund_payment_intent`)."""
    charge_id = obj["id"] if obj.get("object", "charge") == "charge" else object_id(obj.get("charge"))
    charge = _reread(gateway.retrieve_charge, charge_id) if charge_id else None
    if charge is None:
        return "ignored"
    refunds = gateway.list_refunds(charge_id)
    if not refunds:
        return "ignored"
    whose = _whose_payment(gateway, charge)
    with session_scope() as session:
        for refund in refunds:
            money_events.record_refund(
                session,
                stripe_refund_id=refund["id"],
                amount_cents=int(refund.get("amount") or 0),
                currency=refund.get("currency") or charge.get("currency") or "",
                status=refund.get("status"),
                reason=refund.get("reason"),
                ours=(refund.get("metadata") or {}).get("source") == REFUND_SOURCE_STUDIO,
                actor=ACTOR,
                **whose,
            )
    return "processed"


# Cards and customers ----------------------------------------------------------------


def on_setup_failed(gateway: StripeGateway, obj: dict) -> str:
    """`setup_intent.setup_failed`: the parent told once per SetupIntent, with Stripe's message.
    Holds waiting for a card stay as they are (the parent may try another card). Nothing is
    sent when the intent has succeeded since (a later attempt worked)."""
    intent = _reread(gateway.retrieve_setup_intent, obj["id"])
    if intent is None or intent.get("status") in ("succeeded", "processing"):
        return "ignored"
    # localstripe keeps no `last_setup_error`: the event's snapshot says what went wrong then.
    error = intent.get("last_setup_error") or obj.get("last_setup_error") or {}
    payee_ref = (intent.get("metadata") or {}).get("payee_id")
    with session_scope() as session:
        payee = billing.payee_by_customer(session, object_id(intent.get("customer")))
        if payee is None and payee_ref and str(payee_ref).isdigit():
            payee = session.get(Payee, int(payee_ref))
        if payee is None:
            return "ignored"
        queue_email(
            session,
            template="card_setup_failed",
            recipient=payee.email,
            context=card_setup_failed_context(session, payee, error),
            dedupe_key=f"card_setup_failed:{intent['id']}",
        )
    return "processed"


def card_setup_failed_context(session, payee, error: dict) -> dict:
    """What the `card_setup_failed` email shows: Stripe's message (`last_setup_error`) and the
    family's holds still waiting for a card, with when each ends."""
    settings = get_settings()
    holds = [
        {key: context[key] for key in _HOLD_FIELDS}
        for context in (
            enrollment_ops.email_context(session, enrollment)
            for enrollment in enrollment_ops.awaiting_payment_method(session, payee.id)
        )
    ]
    return {
        "studio_name": settings.STUDIO_NAME,
        "timezone": settings.STUDIO_TIMEZONE,
        "payee_name": payee.name,
        "error_message": error.get("message") or "Your card could not be set up.",
        "decline_code": error.get("decline_code") or error.get("code"),
        "holds": holds,
    }


def on_payment_method_detached(gateway: StripeGateway, obj: dict) -> str:
    """`payment_method.detached`: families noting this card as their default forget it, unless
    Stripe shows it attached again (a stale event)."""
    method = _reread(gateway.retrieve_payment_method, obj["id"])
    if method is not None and object_id(method.get("customer")):
        return "ignored"
    with session_scope() as session:
        forgotten = billing.forget_default_card(session, payment_method_id=obj["id"], actor=ACTOR)
    return "processed" if forgotten else "ignored"


def on_customer_deleted(gateway: StripeGateway, obj: dict) -> str:
    """`customer.deleted`: the family forgets the customer and its card (the next booking makes
    a new one); the admin is told when live enrollments were billed by its subscriptions.
    Ignored while Stripe still has the customer (a forged or mistaken event)."""
    customer = _reread(gateway.retrieve_customer, obj["id"])
    if customer is not None and not customer.get("deleted"):
        return "ignored"
    with session_scope() as session:
        payee = dunning.forget_stripe_customer(session, customer_id=obj["id"], actor=ACTOR)
    return "processed" if payee is not None else "ignored"


MONEY_HANDLERS: dict[str, Callable[[StripeGateway, dict], str]] = {
    "charge.dispute.created": on_dispute,
    "charge.dispute.updated": on_dispute,
    "charge.dispute.closed": on_dispute,
    "charge.dispute.funds_withdrawn": on_dispute,
    "charge.dispute.funds_reinstated": on_dispute,
    "charge.refunded": on_refund,
    "charge.refund.updated": on_refund,
    "refund.created": on_refund,
    "refund.updated": on_refund,
    "refund.failed": on_refund,
    "setup_intent.setup_failed": on_setup_failed,
    "payment_method.detached": on_payment_method_detached,
    "customer.deleted": on_customer_deleted,
}
