"""Readers of Stripe's answers in both API shapes: the one localstripe speaks (2017) and the
current one (2025-03-31.basil and later), where periods live on subscription items and an
invoice's subscription sits under `parent.subscription_details`. Plain dicts in, ids and values
out; no Stripe call and no SDK import (the gateway, `workers/stripe_gateway.py`, makes the calls)."""

from __future__ import annotations

from typing import Any

# Shapes: old (localstripe, API 2017) and new (2025-03-31.basil and later) -------------


def object_id(value: Any) -> str | None:
    """The id of an expandable field: the object's `id` when it was expanded, else the id itself."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def payment_client_secret(invoice: dict | None, intent: dict | None) -> str | None:
    """The client secret Stripe.js needs to finish a payment: the invoice's `confirmation_secret`
    (today's API), else the PaymentIntent's own."""
    secret = ((invoice or {}).get("confirmation_secret") or {}).get("client_secret")
    return secret or (intent or {}).get("client_secret")


def invoice_subscription_id(invoice: dict) -> str | None:
    """An invoice's subscription id: `parent.subscription_details.subscription` (new) or `subscription` (old)."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return object_id(details.get("subscription")) or object_id(invoice.get("subscription"))


def invoice_payment_intent_id(invoice: dict) -> str | None:
    """An invoice's PaymentIntent (old shape `payment_intent`; new `payments.data[].payment`)."""
    if invoice.get("payment_intent"):
        return object_id(invoice["payment_intent"])
    for payment in (invoice.get("payments") or {}).get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent:
            return object_id(intent)
    return None


def subscription_period_end(subscription: dict) -> int | None:
    """When the current period ends: on the items (new) or the subscription (old)."""
    items = (subscription.get("items") or {}).get("data") or []
    ends = [item.get("current_period_end") for item in items if item.get("current_period_end")]
    if ends:
        return min(ends)
    return subscription.get("current_period_end")


def discount_id(discount: Any) -> str | None:
    """A subscription's discount's id (the item of `discounts`: an id, or the expanded Discount)."""
    return object_id(discount)


def discount_coupon_id(discount: Any) -> str | None:
    """The coupon an expanded Discount redeems: `source.coupon` (today) or `coupon` (before
    2025-03-31.basil); None for an unexpanded discount id."""
    if not isinstance(discount, dict):
        return None
    source = discount.get("source") or {}
    return object_id(source.get("coupon")) or object_id(discount.get("coupon"))


def enrollment_id_of(obj: dict) -> int | None:
    """Our enrollment id from an object's metadata, if we put it there."""
    value = (obj.get("metadata") or {}).get("enrollment_id")
    return int(value) if value and str(value).isdigit() else None
