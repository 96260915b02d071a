"""The Stripe gateway's verbs on customers, their cards (payment methods, SetupIntents) and the
catalogue a booking is billed from (products, prices): `CustomerVerbs`, a part of
`workers.stripe_gateway.StripeGateway`, which makes every request (`_call`) and holds the
idempotency-key rule (`_key`). The SDK's parameter types are imported for the type checker
only: the SDK itself is imported (and called) by `workers/stripe_gateway.py`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import (
        CustomerCreateParams,
        CustomerListParams,
        CustomerUpdateParams,
        PaymentMethodListParams,
        PriceCreateParams,
        ProductCreateParams,
        SetupIntentCreateParams,
        SetupIntentListParams,
    )

# Stripe's intervals for our plan frequencies (semester plans are charged once, no interval).
INTERVALS = {"weekly": "week", "monthly": "month"}

# A SetupIntent in these states still waits for the parent's card (or the bank's check): reusable.
OPEN_SETUP_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action")


class CustomerVerbs:
    """Customers, cards and the catalogue, over the gateway's `_call` (see `StripeGateway`)."""

    v1: Any  # the SDK client's v1 services (set by `StripeGateway.__init__`)
    _call: Callable[..., dict]  # `StripeGateway._call`: every request made, its error sorted, logged, counted
    _key: Callable[[str | None], RequestOptions | None]  # `StripeGateway._key`: the idempotency key's options

    # Customers and payment methods --------------------------------------------------

    def create_customer(self, *, email: str, name: str, payee_id: int, key: str) -> dict:
        """A customer for a payee; the key makes a retried creation return the same one."""
        params: CustomerCreateParams = {"email": email, "name": name, "metadata": {"payee_id": str(payee_id)}}
        return self._call(self.v1.customers.create, params, self._key(f"{key}-customer"))

    def find_customer(self, *, email: str, payee_id: int) -> dict | None:
        """The customer an earlier (ambiguous) create made for this payee, found by email and our
        `payee_id` metadata; None when there is none."""
        params: CustomerListParams = {"email": email, "limit": 100}
        for customer in self._call(self.v1.customers.list, params).get("data") or []:
            if (customer.get("metadata") or {}).get("payee_id") == str(payee_id) and not customer.get("deleted"):
                return customer
        return None

    def retrieve_customer(self, customer_id: str) -> dict:
        return self._call(self.v1.customers.retrieve, customer_id)

    def default_payment_method(self, customer_id: str) -> str | None:
        """The customer's default payment method for invoices; else the newest attached card
        (made the default on the way), else None."""
        customer = self.retrieve_customer(customer_id)
        current = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if current:
            return current if isinstance(current, str) else current.get("id")
        params: PaymentMethodListParams = {"customer": customer_id, "type": "card"}
        cards = self._call(self.v1.payment_methods.list, params)
        data = sorted(cards.get("data") or [], key=lambda pm: pm.get("created") or 0)
        if not data:
            return None
        return self.set_default_payment_method(customer_id, data[-1]["id"])

    def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> str:
        """Make a card the customer's default for invoices and off-session charges. No idempotency
        key: setting a value is idempotent by itself, and a key per (customer, card) made Stripe
        replay the first answer when a parent went back to an earlier card (A, B, A)."""
        params: CustomerUpdateParams = {"invoice_settings": {"default_payment_method": payment_method_id}}
        self._call(self.v1.customers.update, customer_id, params)
        return payment_method_id

    def open_setup_intent(self, *, customer_id: str, payee_id: int) -> dict | None:
        """The customer's newest SetupIntent of ours still waiting for the parent (no card yet, a
        declined one, or the bank's check pending): a card entry reuses it rather than making
        one per click. Stripe's list, not a column of ours: Stripe knows when one succeeded."""
        params: SetupIntentListParams = {"customer": customer_id, "limit": 100}
        for intent in self._call(self.v1.setup_intents.list, params).get("data") or []:
            if (
                intent.get("status") in OPEN_SETUP_STATUSES
                and intent.get("usage") == "off_session"
                and (intent.get("metadata") or {}).get("payee_id") == str(payee_id)
            ):
                return intent
        return None

    def create_setup_intent(self, *, customer_id: str, payee_id: int) -> dict:
        """A SetupIntent the parent's browser confirms with Stripe.js (when no open one is left,
        `open_setup_intent`): a card, saved for off-session use (the bank's check, if any,
        happens now, with the parent present, so later charges need none)."""
        params: SetupIntentCreateParams = {
            "customer": customer_id,
            "usage": "off_session",
            "allowed_payment_method_types": ["card"],
            "metadata": {"payee_id": str(payee_id)},
        }
        return self._call(self.v1.setup_intents.create, params)

    def retrieve_setup_intent(self, setup_intent_id: str) -> dict:
        return self._call(self.v1.setup_intents.retrieve, setup_intent_id)

    # Catalogue ------------------------------------------------------------------------

    def create_product(self, *, plan_id: int | None, name: str, key: str) -> dict:
        """The Product of a plan (`plan_id` None: a plan not saved yet, made once Stripe has answered)."""
        params: ProductCreateParams = {"name": name}
        if plan_id:
            params["metadata"] = {"plan_id": str(plan_id)}
        return self._call(self.v1.products.create, params, self._key(f"{key}-product"))

    def create_price(
        self, *, plan_id: int | None, product_id: str, amount_cents: int, currency: str, frequency: str, key: str
    ) -> dict:
        """Recurring for weekly/monthly plans; a one-time per-lesson price for semester plans."""
        metadata = {"plan_id": str(plan_id), "frequency": frequency} if plan_id else {"frequency": frequency}
        params: PriceCreateParams = {
            "product": product_id,
            "unit_amount": amount_cents,
            "currency": currency,
            "metadata": metadata,
        }
        if frequency in INTERVALS:
            params["recurring"] = {"interval": INTERVALS[frequency]}
        return self._call(self.v1.prices.create, params, self._key(f"{key}-price-{amount_cents}-{currency}"))

    def retrieve_price(self, price_id: str) -> dict:
        """A Price: `active`, `unit_amount`, `currency`, `recurring` (None for a one-time price)."""
        return self._call(self.v1.prices.retrieve, price_id)
