"""The Stripe gateway's verbs on subscriptions, invoices, payments and refunds, and its reads of
the objects money webhooks name: `BillingVerbs`, a part of
`workers.stripe_gateway.StripeGateway`, which makes every request (`_call`) and holds the
idempotency-key rule (`_key`). The SDK's parameter types are imported for the type checker
only: the SDK itself is imported (and called) by `workers/stripe_gateway.py`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.stripe_shapes import discount_coupon_id, discount_id, invoice_payment_intent_id, object_id

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import (
        InvoiceRetrieveParams,
        PaymentIntentCreateParams,
        PaymentIntentListParams,
        RefundCreateParams,
        RefundListParams,
        SubscriptionCreateParams,
        SubscriptionListParams,
        SubscriptionRetrieveParams,
        SubscriptionUpdateParams,
    )


class BillingVerbs:
    """Subscriptions, invoices, payments and refunds, over the gateway's `_call` (see `StripeGateway`)."""

    v1: Any  # the SDK client's v1 services (set by `StripeGateway.__init__`)
    _call: Callable[..., dict]  # `StripeGateway._call`: every request made, its error sorted, logged, counted
    _key: Callable[[str | None], RequestOptions | None]  # `StripeGateway._key`: the idempotency key's options

    # Billing ----------------------------------------------------------------------------

    def find_subscription(self, customer_id: str, enrollment_id: int) -> dict | None:
        """A live subscription already made for this enrollment (belt and braces to the key)."""
        params: SubscriptionListParams = {"customer": customer_id, "status": "all", "limit": 100}
        for subscription in self._call(self.v1.subscriptions.list, params).get("data") or []:
            if (subscription.get("metadata") or {}).get("enrollment_id") == str(enrollment_id) and subscription.get(
                "status"
            ) not in ("canceled", "incomplete_expired"):
                return subscription
        return None

    def create_subscription(
        self, *, enrollment_id: int, customer_id: str, price_id: str, key: str, coupon_id: str | None = None
    ) -> dict:
        """Subscribe, charging the first period now, off-session. `allow_incomplete`: a first
        payment the bank wants authenticated leaves the subscription `incomplete` with its
        PaymentIntent `requires_action` (see `first_payment`) instead of failing the booking;
        a declined one leaves it `incomplete` too, and the pipeline cancels it. `coupon_id`: a
        discount on every invoice, the first one included (today's `discounts`; the old
        `coupon` parameter is gone)."""
        params: SubscriptionCreateParams = {
            "customer": customer_id,
            "items": [{"price": price_id}],
            "payment_behavior": "allow_incomplete",
            "off_session": True,
            "metadata": {"enrollment_id": str(enrollment_id)},
        }
        if coupon_id:
            params["discounts"] = [{"coupon": coupon_id}]
        return self._call(self.v1.subscriptions.create, params, self._key(f"{key}-subscription"))

    # Discounts: our coupon on a subscription (the coupon itself: `StripeGateway.ensure_coupon`) --

    def set_subscription_coupon(self, subscription_id: str, *, coupon_id: str | None, ours: str, key: str) -> bool:
        """Make `coupon_id` (None: none) the one coupon of ours — those whose id starts with `ours`
        — on a subscription, keeping any other discount it carries (one the studio added in the
        dashboard). Read first: False when it already is so, or the subscription has ended; True
        once Stripe changed it (no charge now: the next invoices carry the change)."""
        params: SubscriptionRetrieveParams = {"expand": ["discounts"]}
        current = self._call(self.v1.subscriptions.retrieve, subscription_id, params)
        if current.get("status") in ("canceled", "incomplete_expired"):
            return False
        discounts = [(discount_id(d), discount_coupon_id(d)) for d in current.get("discounts") or []]
        mine = [coupon for _, coupon in discounts if coupon and coupon.startswith(ours)]
        if mine == ([coupon_id] if coupon_id else []):
            return False
        kept: list[Any] = [{"discount": d} for d, coupon in discounts if d and not (coupon or "").startswith(ours)]
        wanted = kept + ([{"coupon": coupon_id}] if coupon_id else [])
        update: SubscriptionUpdateParams = {"discounts": wanted or ""}
        self._call(self.v1.subscriptions.update, subscription_id, update, self._key(key))
        return True

    def first_payment(self, invoice_id: str) -> tuple[dict, dict | None]:
        """An invoice and the PaymentIntent paying it (None when it has none yet). Today's API
        lists an invoice's payments only when asked (`expand: payments`); localstripe names the
        PaymentIntent on the invoice itself."""
        invoice = self.retrieve_invoice(invoice_id)
        if "payment_intent" not in invoice:
            params: InvoiceRetrieveParams = {"expand": ["payments"]}
            invoice = self._call(self.v1.invoices.retrieve, invoice_id, params)
        intent_id = invoice_payment_intent_id(invoice)
        return invoice, self.retrieve_payment_intent(intent_id) if intent_id else None

    def find_payment(
        self, customer_id: str, enrollment_id: int, *, statuses: tuple[str, ...] = ("succeeded", "processing", "requires_capture")
    ) -> dict | None:
        """A payment already taken (or being taken) for this enrollment: a re-run must not charge
        again, even when the semester's price (and so the charge's key) changed meanwhile."""
        params: PaymentIntentListParams = {"customer": customer_id, "limit": 100}
        for intent in self._call(self.v1.payment_intents.list, params).get("data") or []:
            if (intent.get("metadata") or {}).get("enrollment_id") == str(enrollment_id) and intent.get("status") in statuses:
                return intent
        return None

    def charge_off_session(
        self, *, enrollment_id: int, customer_id: str, payment_method_id: str, amount_cents: int, currency: str, key: str
    ) -> dict:
        """One off-session PaymentIntent (the semester plan). A decline raises a terminal error; a
        charge the bank wants authenticated raises `AuthenticationRequired` (real Stripe, a 402)
        or comes back `requires_action` (localstripe). No redirect-based methods: the card given
        is charged, nobody is there to be sent to a bank's page."""
        params: PaymentIntentCreateParams = {
            "amount": amount_cents,
            "currency": currency,
            "customer": customer_id,
            "payment_method": payment_method_id,
            "confirm": True,
            "off_session": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {"enrollment_id": str(enrollment_id)},
        }
        return self._call(self.v1.payment_intents.create, params, self._key(f"{key}-payment-{amount_cents}"))

    def void_open_invoice(self, invoice_id: str) -> dict:
        """Void an invoice nobody paid, so nothing can be paid on it any more (its hosted page
        included): cancelling a subscription leaves its open invoices open. A paid, void or
        draft invoice is returned as it is."""
        current = self.retrieve_invoice(invoice_id)
        if current.get("status") != "open":
            return current
        return self._call(self.v1.invoices.void_invoice, invoice_id, None, self._key(f"invoice-{invoice_id}-void"))

    def cancel_payment_intent(self, payment_intent_id: str) -> dict:
        """Cancel a payment nobody finished (a 3-D Secure check never done); a finished or already
        cancelled one is returned as it is. Not for an invoice's PaymentIntent: Stripe refuses
        that; void the invoice instead."""
        current = self.retrieve_payment_intent(payment_intent_id)
        if current.get("status") in ("succeeded", "canceled", "processing"):
            return current
        return self._call(self.v1.payment_intents.cancel, payment_intent_id)

    def retrieve_subscription(self, subscription_id: str) -> dict:
        return self._call(self.v1.subscriptions.retrieve, subscription_id)

    def cancel_subscription(self, subscription_id: str) -> dict:
        """Cancel now, leaving nothing payable: Stripe keeps a cancelled subscription's open
        invoice open (payable on its hosted page), so that one is voided too. An already
        cancelled subscription is fine."""
        current = self.retrieve_subscription(subscription_id)
        if current.get("status") not in ("canceled", "incomplete_expired"):
            current = self._call(
                self.v1.subscriptions.cancel, subscription_id, None, self._key(f"subscription-{subscription_id}-cancel")
            )
        latest_id = object_id(current.get("latest_invoice"))
        if latest_id:
            self.void_open_invoice(latest_id)
        return current

    def set_cancel_at_period_end(self, subscription_id: str, *, key: str) -> dict:
        """Stop renewing: the subscription runs to the end of the period paid for, then Stripe ends
        it (`customer.subscription.deleted`); nothing more is charged. One already ending, or
        ended, is returned as it is (the caller reads `status`)."""
        current = self.retrieve_subscription(subscription_id)
        if current.get("cancel_at_period_end") or current.get("status") in ("canceled", "incomplete_expired"):
            return current
        params: SubscriptionUpdateParams = {"cancel_at_period_end": True}
        return self._call(self.v1.subscriptions.update, subscription_id, params, self._key(key))

    def update_subscription_metadata(self, subscription_id: str, metadata: dict[str, str], *, key: str) -> dict:
        """Set keys of a subscription's metadata (the others are kept), e.g. the enrollment it bills
        now that the booking moved; no charge, no proration."""
        params: SubscriptionUpdateParams = {"metadata": metadata}
        return self._call(self.v1.subscriptions.update, subscription_id, params, self._key(key))

    def retrieve_invoice(self, invoice_id: str) -> dict:
        return self._call(self.v1.invoices.retrieve, invoice_id)

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict:
        return self._call(self.v1.payment_intents.retrieve, payment_intent_id)

    # Money events: the objects webhooks name, re-read before acting -------------------

    def retrieve_charge(self, charge_id: str) -> dict:
        """A charge with its PaymentIntent id (`payment_intent`) and refunds."""
        return self._call(self.v1.charges.retrieve, charge_id)

    def retrieve_dispute(self, dispute_id: str) -> dict:
        """A dispute: amount, currency, reason, status, `evidence_details.due_by`, `charge`."""
        return self._call(self.v1.disputes.retrieve, dispute_id)

    def retrieve_payment_method(self, payment_method_id: str) -> dict:
        """A payment method; `customer` is None once it was detached."""
        return self._call(self.v1.payment_methods.retrieve, payment_method_id)

    def list_refunds(self, charge_id: str) -> list[dict]:
        """The refunds of a charge (newest first)."""
        params: RefundListParams = {"charge": charge_id, "limit": 100}
        return self._call(self.v1.refunds.list, params).get("data") or []

    def refund_payment_intent(self, payment_intent_id: str, *, key: str) -> dict:
        """Give a payment back in full."""
        params: RefundCreateParams = {"payment_intent": payment_intent_id, "metadata": {"source": "studio"}}
        return self._call(self.v1.refunds.create, params, self._key(key))
