"""The Stripe gateway: the one place that talks to Stripe (with `workers/payments.py` through it).

Every write carries a stable idempotency key of its step (`booking-<id>-<created>-subscription`;
the row's creation second keeps keys unique when a database is rebuilt against the same
Stripe account):
the SDK's own random key would change when Huey retries the task, so a retry after a
timeout could charge twice. The SDK's network retries are off: Huey owns retrying.

Errors are sorted once here: `TransientStripeError` (network, 5xx, rate limit — retry
later) or `TerminalStripeError` (card declined, invalid request — give up, tell people);
Stripe's `Stripe-Should-Retry` header, when it answers one, decides. A create whose answer
was lost (a timeout, a dropped connection, a 5xx) is `ambiguous`: the object may exist. The
pipeline then looks it up by our metadata before creating again, and creates with a new
idempotency key (Stripe replays the stored answer of a key, a 500 included).
`AuthenticationRequired` is a charge the bank wants the parent to authenticate (3-D Secure).

The API version is pinned here, once (`API_VERSION`): every request names it, and webhook
events rendered in another version are noticed (`note_event_api_version`). Every request's
parameters are typed with the SDK's generated `stripe.params.*Params` (mypy checks this
module), and the test suite checks every request against the same types.

Objects come back from Stripe 16 as `StripeObject`s; we hand plain dicts to callers. Two
API shapes are read by the helpers at the bottom: the one localstripe speaks (2017) and
the current one (2025-03-31.basil and later) where periods live on subscription items and
an invoice's subscription sits under `parent.subscription_details`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import stripe
from stripe import RequestOptions
from stripe.params import (
    CouponCreateParams,
    CustomerCreateParams,
    CustomerListParams,
    CustomerUpdateParams,
    InvoiceRetrieveParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentMethodListParams,
    PriceCreateParams,
    ProductCreateParams,
    RefundCreateParams,
    RefundListParams,
    SetupIntentCreateParams,
    SetupIntentListParams,
    SubscriptionCreateParams,
    SubscriptionListParams,
    SubscriptionRetrieveParams,
    SubscriptionUpdateParams,
)

from models import logs
from models.config import Settings, get_settings
from models.plain import plain
from workers import metrics

log = logging.getLogger(__name__)

# The Stripe API version this code reads and writes (stripe-python 16.1's own; a test keeps the
# two equal so an SDK upgrade is a conscious change of this line and of the shape helpers).
API_VERSION = "2026-10-28.endive"

# Stripe's intervals for our plan frequencies (semester plans are charged once, no interval).
INTERVALS = {"weekly": "week", "monthly": "month"}

# A SetupIntent in these states still waits for the parent's card (or the bank's check): reusable.
OPEN_SETUP_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action")


class StripeGatewayError(Exception):
    """A Stripe call failed; `str()` is one line for logs, emails and dead letters.

    `ambiguous`: the request may have been carried out (its answer was lost or was a 5xx).
    `key_spent`: Stripe answered 5xx, and stores that answer under the idempotency key: a retry
    with the same key gets the 500 again. (After a timeout or a dropped connection the same
    key is what makes a retry safe: Stripe replays the first answer, or says 409 while the
    first request still runs.)"""

    def __init__(self, message: str, *, code: str | None = None, ambiguous: bool = False, key_spent: bool = False):
        super().__init__(message)
        self.code = code
        self.ambiguous = ambiguous
        self.key_spent = key_spent


class TransientStripeError(StripeGatewayError):
    """Worth retrying: Stripe unreachable, 5xx, rate limited, idempotent request in flight (409)."""


class TerminalStripeError(StripeGatewayError):
    """Retrying will not help: card declined, authentication required, invalid request, an
    idempotency key reused with other parameters."""


class StripeNotConfigured(TerminalStripeError):
    """No `STRIPE_SECRET_KEY`: the booking pipeline cannot run."""


class AuthenticationRequired(TerminalStripeError):
    """An off-session charge the bank wants the parent to authenticate (`authentication_required`):
    not a decline. `payment_intent` is the PaymentIntent Stripe left waiting (a plain dict)."""

    def __init__(self, message: str, *, payment_intent: dict | None = None):
        super().__init__(message, code="authentication_required")
        self.payment_intent = payment_intent or {}


def _describe(error: stripe.StripeError) -> str:
    message = getattr(error, "user_message", None) or str(error) or type(error).__name__
    status = getattr(error, "http_status", None)
    return f"{type(error).__name__}{f' ({status})' if status else ''}: {message}".splitlines()[0][:480]


def _header(error: stripe.StripeError, name: str) -> str | None:
    headers = getattr(error, "headers", None) or {}
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def classify(error: stripe.StripeError) -> StripeGatewayError:
    """Map an SDK error to transient (retry) or terminal (give up), and say whether the request
    may have taken effect (`ambiguous`: no answer, or a 5xx)."""
    code = getattr(error, "code", None)
    status = getattr(error, "http_status", None) or 0
    ambiguous = isinstance(error, stripe.APIConnectionError) or status >= 500
    if code == "authentication_required" or getattr(error, "decline_code", None) == "authentication_required":
        intent = getattr(getattr(error, "error", None), "payment_intent", None)
        return AuthenticationRequired(_describe(error), payment_intent=plain(intent) if intent else None)
    if isinstance(error, stripe.IdempotencyError):  # the key was used for another request: never heals
        return TerminalStripeError(_describe(error), code=code)
    facts: dict[str, Any] = {"code": code, "ambiguous": ambiguous, "key_spent": status >= 500}
    should_retry = (_header(error, "stripe-should-retry") or "").lower()
    if should_retry == "true":
        return TransientStripeError(_describe(error), **facts)
    if should_retry == "false":
        return TerminalStripeError(_describe(error), **facts)
    if isinstance(error, (stripe.APIConnectionError, stripe.RateLimitError)):
        return TransientStripeError(_describe(error), **facts)
    # 409: a request with the same idempotency key is still in flight (or a lock): try again.
    if isinstance(error, stripe.APIError) or status >= 500 or status in (409, 429):
        return TransientStripeError(_describe(error), **facts)
    return TerminalStripeError(_describe(error), code=code)


class WebhookSignatureError(Exception):
    """A webhook body whose `Stripe-Signature` does not verify (or is missing, or too old)."""


def verify_webhook(payload: bytes, signature: str, secret: str, *, tolerance: int = 300) -> None:
    """Check Stripe's signature over the raw body (HMAC-SHA256 with the endpoint's secret, and a
    timestamp no older than `tolerance` seconds). Raises WebhookSignatureError, or
    UnicodeDecodeError for a body that is not text."""
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as error:
        raise WebhookSignatureError(str(error)) from None


_versions_noted: set[str] = set()


def note_event_api_version(event_version: str | None) -> bool:
    """True (and one warning per version and process) when a webhook event was rendered in
    another API version than ours: it is still stored and read through the shape helpers
    below, which know both the old and the current shapes."""
    if not event_version or event_version == API_VERSION:
        return False
    if event_version not in _versions_noted:
        _versions_noted.add(event_version)
        log.warning(
            "Stripe event rendered in API version %s, ours is %s: read through the shape helpers; "
            "set the webhook endpoint's version to %s in the Stripe dashboard",
            event_version,
            API_VERSION,
            API_VERSION,
        )
    return True


class _RequestsReadingTheEnvironmentOnce:
    """`requests` as the SDK's RequestsClient uses it, except that the per-thread sessions it
    makes do not re-read the environment on every request (`trust_env`: requests scans
    os.environ twice per call for proxy variables and looks for ~/.netrc — measured at ~15 %
    of a worker's CPU per booking). The proxy for the API host is read once, in `_client()`."""

    def __getattr__(self, name: str) -> Any:
        import requests

        return getattr(requests, name)

    @staticmethod
    def Session() -> Any:  # noqa: N802 (the name RequestsClient calls)
        import requests

        session = requests.Session()
        session.trust_env = False
        return session


# What the HTTP client saw of the request `_call` is making: method, path, key, status, Stripe's id.
_request_facts: ContextVar[dict[str, Any] | None] = ContextVar("stripe_request_facts", default=None)


class _RecordingRequestsClient(stripe.RequestsClient):
    """The SDK's HTTP client, noting each request's method, path (no query string: a list's
    filters may name an email), idempotency key, status and Stripe's `Request-Id` for `_call`'s
    log line. Never a body."""

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, *, _usage: Any = None
    ) -> tuple[Any, int, Mapping[str, str]]:
        facts = _request_facts.get()
        if facts is not None:
            facts.update(method=method.upper(), path=urlsplit(url).path, idempotency_key=(headers or {}).get("Idempotency-Key"))
        content, status, response_headers = super().request(method, url, headers, post_data)
        if facts is not None:
            facts.update(status=status, stripe_request_id=response_headers.get("Request-Id"))
        return content, status, response_headers


def _operation(fn: Callable[..., Any]) -> str:
    """`customer.create` for `client.v1.customers.create` (the service's class, the method)."""
    service = type(getattr(fn, "__self__", None)).__name__.removesuffix("Service")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", service).lower() + "." + getattr(fn, "__name__", "call")


def _outcome(error: StripeGatewayError | None) -> str:
    if error is None:
        return "error"  # not an answer of Stripe's (a bug of ours, an interrupted call)
    if isinstance(error, AuthenticationRequired):
        return "authentication_required"
    return "transient" if isinstance(error, TransientStripeError) else "terminal"


def _record(operation: str, facts: dict[str, Any], seconds: float, outcome: str, error: StripeGatewayError | None) -> None:
    """One log line and the metrics of one Stripe call."""
    metrics.STRIPE_REQUESTS.labels(operation, outcome).inc()
    metrics.STRIPE_DURATION.labels(operation).observe(seconds)
    logs.event(
        log,
        "stripe.request",
        level=logging.INFO if outcome == "ok" else logging.WARNING,
        operation=operation,
        method=facts.get("method"),
        path=facts.get("path"),
        idempotency_key=facts.get("idempotency_key"),
        stripe_request_id=facts.get("stripe_request_id"),
        status=facts.get("status"),
        outcome=outcome,
        error_code=error.code if error is not None else None,
        duration_ms=round(seconds * 1000, 1),
    )


@functools.lru_cache(maxsize=8)
def _client(secret_key: str, api_base: str, pid: int, timeout: float = 30.0) -> stripe.StripeClient:
    """One SDK client per key, base address and process, shared by every gateway: its HTTP
    client keeps a keep-alive session per thread, so a booking's calls (and the next
    booking's) reuse a connection instead of opening one each. `pid` keeps a forked
    worker process from sharing its parent's sockets. HTTP(S)_PROXY / NO_PROXY are honoured
    as read at the first call (a process restart picks up a change)."""
    from requests.utils import get_environ_proxies

    options: dict[str, Any] = {"max_network_retries": 0, "stripe_version": API_VERSION}
    if api_base:
        options["base_addresses"] = {"api": api_base}
    proxies = get_environ_proxies(api_base or stripe.api_base)
    proxy: Any = {scheme: url for scheme, url in proxies.items() if scheme in ("http", "https")}
    options["http_client"] = _RecordingRequestsClient(
        timeout=timeout, proxy=proxy or None, _lib=_RequestsReadingTheEnvironmentOnce()
    )
    return stripe.StripeClient(secret_key, **options)


class StripeGateway:
    """Small, typed verbs over Stripe for the booking pipeline, webhooks and reconciliation."""

    def __init__(self, settings: Settings | None = None):
        settings = settings or get_settings()
        if not settings.STRIPE_SECRET_KEY:
            raise StripeNotConfigured("STRIPE_SECRET_KEY is not set: Stripe billing is not configured")
        self.client = _client(
            settings.STRIPE_SECRET_KEY, (settings.STRIPE_API_BASE or "").rstrip("/"), os.getpid(), settings.STRIPE_TIMEOUT_SECONDS
        )
        self.v1 = self.client.v1

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        """Every Stripe request: made, its error sorted (`classify`), logged (`stripe.request`:
        operation, method, path, idempotency key, Stripe's request id, status, duration) and counted."""
        facts: dict[str, Any] = {}
        token = _request_facts.set(facts)
        started = time.perf_counter()
        failure: StripeGatewayError | None = None
        answered = False
        try:
            result = plain(fn(*args, **kwargs))
            answered = True
            return result
        except stripe.StripeError as error:
            failure = classify(error)
            facts.setdefault("status", getattr(error, "http_status", None))
            facts["stripe_request_id"] = facts.get("stripe_request_id") or getattr(error, "request_id", None)
            raise failure from error
        finally:
            _request_facts.reset(token)
            outcome = "ok" if answered else _outcome(failure)
            _record(_operation(fn), facts, time.perf_counter() - started, outcome, failure)

    @staticmethod
    def _key(key: str | None) -> RequestOptions | None:
        return {"idempotency_key": key} if key else None

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

    # The key itself ---------------------------------------------------------------------

    def check_key(self) -> None:
        """A read that changes nothing and needs a valid secret key: one customer listed (a
        restricted key with the permissions this code needs may read customers, not
        necessarily the balance). Raises the gateway's errors (a 401 for a wrong key)."""
        params: CustomerListParams = {"limit": 1}
        self._call(self.v1.customers.list, params)

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

    # Discounts ----------------------------------------------------------------------------

    def ensure_coupon(self, *, coupon_id: str, percent: int, name: str) -> str:
        """A percent-off coupon of ours that lasts (`forever`: every invoice of a subscription
        carrying it), made once: looked up by its id (ours, e.g. `sibling-10`), created when
        Stripe has none. Returns its id."""
        try:
            return self._call(self.v1.coupons.retrieve, coupon_id)["id"]
        except TerminalStripeError as error:
            if not is_not_found(error):
                raise
        params: CouponCreateParams = {
            "id": coupon_id,
            "percent_off": percent,
            "duration": "forever",
            "name": name,
            "metadata": {"purpose": "sibling_discount"},
        }
        return self._call(self.v1.coupons.create, params, self._key(f"coupon-{coupon_id}"))["id"]

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

    def refund_invoice(self, invoice_id: str) -> dict | None:
        """Give a paid invoice's payment back in full (None: nothing was paid)."""
        invoice, intent = self.first_payment(invoice_id)
        if invoice.get("status") != "paid" or not invoice.get("amount_paid"):
            return None
        if intent is None:
            raise TerminalStripeError(f"invoice {invoice_id} is paid but names no payment to refund")
        return self.refund_payment_intent(intent["id"], key=f"{intent['id']}-refund")

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


def is_not_found(error: StripeGatewayError) -> bool:
    """True when Stripe said the object does not exist."""
    cause = error.__cause__
    return isinstance(cause, stripe.InvalidRequestError) and getattr(cause, "http_status", None) == 404


def http_status(error: StripeGatewayError) -> int | None:
    """The HTTP status Stripe answered (401: the key is wrong, 403: a restricted key may not), or
    None when no answer came."""
    return getattr(error.__cause__, "http_status", None)


def is_key_refused(error: StripeGatewayError) -> bool:
    """True when Stripe refused the API key itself (authentication, or a restricted key's permission)."""
    return isinstance(error.__cause__, (stripe.AuthenticationError, stripe.PermissionError))


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
