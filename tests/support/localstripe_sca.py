"""3-D Secure (SCA) and today's request parameters on localstripe: part of the compat layer.

Installed by `localstripe_compat.build_app`; each addition is listed in that module's
docstring too. What real Stripe does and localstripe (2017) does not:

1. Today's parameters, accepted the way Stripe accepts them (the contract checker validates
   the untouched request first): SetupIntent `allowed_payment_method_types` (→ localstripe's
   `payment_method_types`), PaymentIntent `automatic_payment_methods` and subscription
   `off_session` (dropped: localstripe charges the card it is given either way).
2. `POST /v1/setup_intents/<id>/_authenticate` (`client_secret`, `success=true|false`): the
   parent passing (or failing) the bank's check at set-up, as localstripe's PaymentIntent
   `_authenticate`. Success: `succeeded`, the card attached to the customer,
   `setup_intent.succeeded`; failure: `requires_payment_method` with `last_setup_error`
   `setup_intent_authentication_failure`, `setup_intent.setup_failed`. Confirming a SetupIntent
   whose card needs the check emits `setup_intent.requires_action`.
3. Card `4000002500003155` authenticates once: after a successful set-up check, charges of
   that card pass without one. `4000002760003184` needs the check on every charge
   (localstripe's default for both).
4. An off-session PaymentIntent (`confirm`, `off_session`) whose card needs the check answers
   like Stripe: 402 `card_error` `authentication_required`, the PaymentIntent in
   `error.payment_intent`. (Stripe leaves it `requires_payment_method` until the parent
   confirms it on-session with Stripe.js; here it stays `requires_action`, so a test can
   `_authenticate` it as Stripe.js would after that confirmation.)
5. A subscription's invoice whose payment needs the check: `invoice.payment_action_required`
   (and `payment_intent.requires_action`); for a renewal the subscription becomes `past_due`
   with `customer.subscription.updated`, as in Stripe. A failed check on a first invoice
   leaves the subscription `incomplete` (localstripe deleted it): the parent may try again
   until Stripe expires it. (Cancelling a subscription leaves its open invoice open, as in
   Stripe: our code voids it; voiding the invoice of a cancelled subscription leaves it
   `canceled`, not `incomplete_expired` as localstripe had it.)
"""

from __future__ import annotations

import json
import re

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import Event, Invoice, PaymentIntent, PaymentMethod, SetupIntent, Subscription, store

ONCE_CARD = "4000002500003155"
# Payment methods whose set-up check passed (card 3155 needs no further one).
_authenticated_at_setup: set[str] = set()


# 1. Today's parameters ------------------------------------------------------------------

_original_setup_intent_init = SetupIntent.__init__


def _setup_intent_init(self, allowed_payment_method_types=None, automatic_payment_methods=None, **kwargs):
    if allowed_payment_method_types is not None and "payment_method_types" not in kwargs:
        kwargs["payment_method_types"] = allowed_payment_method_types
    _original_setup_intent_init(self, **kwargs)


SetupIntent.__init__ = _setup_intent_init

_original_payment_intent_create = PaymentIntent._api_create.__func__


def _payment_intent_create(cls, automatic_payment_methods=None, **data):
    return _original_payment_intent_create(cls, **data)


PaymentIntent._api_create = classmethod(_payment_intent_create)

_original_subscription_create = None  # set by install(): wraps the compat layer's own wrapper


def _subscription_create(cls, off_session=None, **data):
    return _original_subscription_create(cls, **data)


# 3. Card 3155 authenticates once ---------------------------------------------------------

_original_requires_authentication = PaymentMethod._requires_authentication


def _requires_authentication(self):
    if getattr(self, "_card_number", None) == ONCE_CARD and self.id in _authenticated_at_setup:
        return False
    return _original_requires_authentication(self)


PaymentMethod._requires_authentication = _requires_authentication


# 5. Invoices waiting for the check; a failed check keeps the subscription incomplete -------

_original_pay_invoice = Invoice._api_pay_invoice.__func__


def _pay_invoice(cls, id):
    invoice = _original_pay_invoice(cls, id)
    intent = PaymentIntent._api_retrieve(invoice.payment_intent) if invoice.payment_intent else None
    if intent is not None and intent.status == "requires_action":
        resources.schedule_webhook(Event("payment_intent.requires_action", intent))
        resources.schedule_webhook(Event("invoice.payment_action_required", invoice))
        if invoice.subscription:
            subscription = Subscription._api_retrieve(invoice.subscription)
            if subscription.status == "active":  # a renewal: Stripe marks it past_due
                subscription.status = "past_due"
                resources.schedule_webhook(Event("customer.subscription.updated", subscription))
    return invoice


Invoice._api_pay_invoice = classmethod(_pay_invoice)

_original_initial_failure_later = Subscription._on_initial_payment_failure_later


def _initial_payment_failure_later(self, invoice):
    intent = PaymentIntent._api_retrieve(invoice.payment_intent) if invoice.payment_intent else None
    if intent is not None and intent._authentication_failed:
        return  # Stripe keeps it `incomplete`: the parent may authenticate again
    return _original_initial_failure_later(self, invoice)


Subscription._on_initial_payment_failure_later = _initial_payment_failure_later


_original_initial_voided = Subscription._on_initial_payment_voided


def _initial_payment_voided(self, invoice):
    # localstripe marks any subscription whose invoice is voided `incomplete_expired`, a
    # cancelled (or paying) one included; in Stripe only an incomplete one ends that way.
    if self.status == "incomplete":
        return _original_initial_voided(self, invoice)


Subscription._on_initial_payment_voided = _initial_payment_voided


# 2. SetupIntent authentication -------------------------------------------------------------


async def _authenticate_setup_intent(request):
    data = await server.get_post_data(request) or {}
    intent_id = request.match_info["id"]
    success = resources.try_convert_to_bool(data.get("success", False))
    intent = SetupIntent._api_retrieve(intent_id)
    if data.get("client_secret") != intent.client_secret:
        raise UserError(401, "Unauthorized")
    if intent.status != "requires_action" or not isinstance(success, bool):
        raise UserError(400, "Bad request")
    intent.next_action = None
    if success:
        intent.status = "succeeded"
        intent.last_setup_error = None
        method = PaymentMethod._api_retrieve(intent.payment_method)
        _authenticated_at_setup.add(method.id)
        if intent.customer and method.customer is None:
            method.customer = intent.customer
        resources.schedule_webhook(Event("setup_intent.succeeded", intent))
    else:
        intent.status = "requires_payment_method"
        intent.last_setup_error = {
            "code": "setup_intent_authentication_failure",
            "type": "card_error",
            "message": "The latest attempt to set up the payment method has failed because authentication failed.",
        }
        intent.payment_method = None
        resources.schedule_webhook(Event("setup_intent.setup_failed", intent))
    store.dump_to_disk()
    return server.json_response(intent._export())


_CONFIRM_SETUP = re.compile(r"^/v1/setup_intents/(seti_\w+)/confirm$")


@web.middleware
async def sca_middleware(request, handler):
    """4. the 402 of an off-session charge that needs the check; 2. `setup_intent.requires_action`."""
    response = await handler(request)
    if request.method != "POST" or response.status != 200:
        return response
    if request.path == "/v1/payment_intents":
        data = await server.get_post_data(request) or {}
        off_session = resources.try_convert_to_bool(data.get("off_session"))
        body = json.loads(response.body)
        if off_session is True and body.get("status") == "requires_action":
            return web.json_response(
                {
                    "error": {
                        "type": "card_error",
                        "code": "authentication_required",
                        "decline_code": "authentication_required",
                        "message": "Your card was declined. This transaction requires authentication.",
                        "payment_intent": body,
                    }
                },
                status=402,
            )
    match = _CONFIRM_SETUP.match(request.path)
    if match:
        intent = SetupIntent._api_retrieve(match.group(1))
        if intent.status == "requires_action":
            resources.schedule_webhook(Event("setup_intent.requires_action", intent))
    return response


def install(app: web.Application) -> None:
    """Add the SCA routes and middleware to localstripe's app (after the compat layer's own)."""
    global _original_subscription_create
    if _original_subscription_create is None:
        _original_subscription_create = Subscription._api_create.__func__
        Subscription._api_create = classmethod(_subscription_create)
    app.middlewares.append(sca_middleware)
    app.router.add_post("/v1/setup_intents/{id}/_authenticate", _authenticate_setup_intent)


def authenticated_cards() -> set[str]:
    """Payment methods whose set-up check passed (for tests)."""
    return set(_authenticated_at_setup)


__all__ = ["install", "ONCE_CARD", "authenticated_cards"]
