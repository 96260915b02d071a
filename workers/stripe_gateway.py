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
parameters are typed with the SDK's generated `stripe.params.*Params` (mypy checks these
modules), and the test suite checks every request against the same types.

Objects come back from Stripe 16 as `StripeObject`s; we hand plain dicts to callers. Two
API shapes are read by the helpers of `workers/stripe_shapes.py`: the one localstripe speaks
(2017) and the current one (2025-03-31.basil and later) where periods live on subscription
items and an invoice's subscription sits under `parent.subscription_details`.

The gateway's verbs live in two parts of the class, `workers/stripe_customers.py`
(customers, cards, catalogue) and `workers/stripe_billing.py` (subscriptions, invoices,
payments, refunds); every request is still made here (`StripeGateway._call`), and this is
the one module that imports the SDK at run time.
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
from stripe.params import CouponCreateParams, CustomerListParams

from models import logs
from models.config import Settings, get_settings
from models.plain import plain
from workers import metrics
from workers.stripe_billing import BillingVerbs
from workers.stripe_customers import CustomerVerbs

log = logging.getLogger(__name__)

# The Stripe API version this code reads and writes (stripe-python 16.1's own; a test keeps the
# two equal so an SDK upgrade is a conscious change of this line and of the shape helpers).
API_VERSION = "2026-10-28.endive"


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
    (`workers/stripe_shapes.py`), which know both the old and the current shapes."""
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


class StripeGateway(CustomerVerbs, BillingVerbs):
    """Small, typed verbs over Stripe for the booking pipeline, webhooks and reconciliation: here
    the requests themselves (`_call`, `_key`), the key check and the verbs that read the
    gateway's errors; customers, cards and the catalogue in `CustomerVerbs`
    (`workers/stripe_customers.py`); subscriptions, invoices, payments and refunds in
    `BillingVerbs` (`workers/stripe_billing.py`)."""

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

    # The key itself ---------------------------------------------------------------------

    def check_key(self) -> None:
        """A read that changes nothing and needs a valid secret key: one customer listed (a
        restricted key with the permissions this code needs may read customers, not
        necessarily the balance). Raises the gateway's errors (a 401 for a wrong key)."""
        params: CustomerListParams = {"limit": 1}
        self._call(self.v1.customers.list, params)

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

    def refund_invoice(self, invoice_id: str) -> dict | None:
        """Give a paid invoice's payment back in full (None: nothing was paid)."""
        invoice, intent = self.first_payment(invoice_id)
        if invoice.get("status") != "paid" or not invoice.get("amount_paid"):
            return None
        if intent is None:
            raise TerminalStripeError(f"invoice {invoice_id} is paid but names no payment to refund")
        return self.refund_payment_intent(intent["id"], key=f"{intent['id']}-refund")


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
