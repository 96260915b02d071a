"""A small compatibility layer on localstripe's aiohttp app: what our code needs and it lacks.

Gaps bridged (each measured against localstripe 1.15.10 with stripe-python 16):
1. No Prices: `/v1/prices` create/retrieve/list. A recurring price is also stored as a
   localstripe Plan with the same id, so subscriptions can use it.
2. `items[].price` on `POST /v1/subscriptions` is refused: rewritten to `items[].plan`.
3. Idempotency keys are ignored: the first answer to an `Idempotency-Key` is replayed.
4. Confirming a SetupIntent does not attach its card to the customer and emits no
   `setup_intent.succeeded`: both are done after a successful confirm.
5. `invoice.paid` is never emitted: it follows every `invoice.payment_succeeded`.
6. Its store pickles itself to /tmp/localstripe.pickle on every write: our own path, or none.
7. Paying a subscription's invoice that fails leaves the subscription `active` and emits
   nothing: like Stripe, it becomes `past_due` with `invoice.payment_failed` and
   `customer.subscription.updated`; a later successful payment emits the update too.
8. `GET /v1/payment_intents?customer=` and `GET /v1/setup_intents?customer=` are refused
   ("Unexpected customer"): filtered here, newest first.
Test helpers (not Stripe): `POST /_config/compat/faults` (make a path fail N times or answer late;
`after_handler`: do the work, then fail; `remember`: store the failure as the idempotency key's
answer, as Stripe does with a 500; `should_retry`: send `Stripe-Should-Retry`),
`DELETE /_config/compat/faults`, `GET /_config/compat/requests` (counts of POSTs by path),
`GET /_config/compat/contract` (`{"checked": N, "violations": [{"method", "path", "problems"}]}`:
every `/v1` request checked against stripe-python's parameter types by `contract_middleware`,
installed first so it sees the request as sent; see `tests/support/stripe_contract.py`) and
`DELETE /_config/compat/contract` (clears it, answering what it held).
9. No disputes: `GET /v1/disputes/{id}` answers the disputes made by the test helper
   `POST /_config/compat/disputes` (`{"charge", "reason"?, "status"?, "amount"?, "due_by"?}`:
   shaped like today's API, `evidence_details.due_by` included) and changed by
   `POST /_config/compat/disputes/{id}` (`{"status", ...}`, e.g. closing it). In memory only.
10. No pause: `POST /_config/compat/subscriptions/{id}` (`{"status"?, "pause_collection"?}`) sets
   what Stripe shows for a paused subscription (`status: paused`, or `pause_collection`).
11. A declined SetupIntent becomes `canceled` with no `last_setup_error`:
   `POST /_config/compat/setup_intents/{id}/fail` (`{"message", "code"?, "decline_code"?}`) leaves
   it as Stripe does, `requires_payment_method` with `last_setup_error`.
12. 3-D Secure and today's request parameters, in `tests/support/localstripe_sca.py` (installed
   by `build_app`; its docstring details each): SetupIntent `allowed_payment_method_types`,
   PaymentIntent `automatic_payment_methods` and subscription `off_session` accepted;
   `POST /v1/setup_intents/<id>/_authenticate` (the parent passing or failing the bank's check
   at set-up, with `setup_intent.succeeded` / `setup_intent.setup_failed`, and
   `setup_intent.requires_action` on a confirm that needs it); card `4000002500003155`
   authenticated once at set-up charges without a check afterwards, `4000002760003184` always
   asks; an off-session PaymentIntent that needs the check answers 402 `authentication_required`
   with the PaymentIntent; a subscription invoice waiting for the check emits
   `invoice.payment_action_required` (+ `payment_intent.requires_action`; a renewal turns the
   subscription `past_due`); a failed check keeps a first invoice's subscription `incomplete`.
13. Faults that look like Stripe's own: `after_handler` (the work done, then a 5xx), `remember`
   (the failure stored as the idempotency key's answer, replayed like Stripe replays a 500),
   `should_retry` (a `Stripe-Should-Retry` header).
14. A subscription update (`POST /v1/subscriptions/{id}`) drops `metadata` and emits nothing: the
   metadata is merged (an empty value unsets a key) and `customer.subscription.updated` emitted,
   as Stripe does (e.g. after `cancel_at_period_end`).
15. Coupons refuse `name` and an id left to Stripe: `POST /v1/coupons` takes both (an id is
   made when none is given); `GET /v1/coupons/{id}` as localstripe has it.
16. No `discounts` on subscriptions (today's API; the old `coupon` parameter is gone):
   `POST /v1/subscriptions` takes `discounts=[{"coupon": id}]` and `POST /v1/subscriptions/{id}`
   a list that replaces them (`{"discount": id}` keeps one it has) or "" that clears them.
   The subscription shows them as today's Discount objects (`discounts[].source.coupon`, always
   expanded). An invoice made for a subscription takes its percent-off coupons of that moment
   off its total (what the PaymentIntent charges; `total_discount_amounts`), rounded to the
   nearest cent as Stripe does.
Not bridged (our code copes): `customer.subscription.updated` is emitted only by 7, 14 and the
SCA renewals (the nightly reconciliation reads subscriptions), events carry the 2017 shapes (the handlers are
also tested on today's shapes: `tests/support/stripe_today.py`).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import time
from collections import Counter

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import Event, Invoice, PaymentMethod, Plan, SetupIntent, StripeObject, Subscription, store

from tests.support import localstripe_sca, stripe_contract


class Price(StripeObject):
    """A Stripe Price (localstripe only knows Plans)."""

    object = "price"
    _id_prefix = "price_"

    def __init__(
        self, product=None, unit_amount=None, currency=None, recurring=None, metadata=None, nickname=None, active=True, **kwargs
    ):
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        unit_amount = resources.try_convert_to_int(unit_amount)
        if not isinstance(product, str) or not isinstance(unit_amount, int) or unit_amount < 0 or not currency:
            raise UserError(400, "Bad request")
        resources.Product._api_retrieve(product)
        if recurring is not None and (
            not isinstance(recurring, dict) or recurring.get("interval") not in ("day", "week", "month", "year")
        ):
            raise UserError(400, "Bad request")
        super().__init__()
        self.product = product
        self.unit_amount = unit_amount
        self.currency = currency
        self.recurring = recurring
        self.type = "recurring" if recurring else "one_time"
        self.metadata = metadata or {}
        self.nickname = nickname
        self.active = True
        if recurring:
            Plan(
                id=self.id,
                product=product,
                amount=unit_amount,
                currency=currency,
                interval=recurring["interval"],
                interval_count=int(recurring.get("interval_count", 1)),
                metadata=self.metadata,
            )


# 2. items[].price → items[].plan
_original_subscription_create = Subscription._api_create.__func__


def _subscription_create(cls, **data):
    for item in data.get("items") or []:
        if isinstance(item, dict) and "price" in item:
            item["plan"] = item.pop("price")
    return _original_subscription_create(cls, **data)


Subscription._api_create = classmethod(_subscription_create)


# 8. payment_intents list filtered by customer
_original_payment_intent_list = resources.PaymentIntent._api_list_all.__func__


def _payment_intent_list(cls, url, customer=None, limit=None, starting_after=None, **kwargs):
    listing = _original_payment_intent_list(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if customer is not None:
        listing._list = [intent for intent in listing._list if intent.customer == customer]
    listing._list.sort(key=lambda intent: intent.created, reverse=True)
    return listing


resources.PaymentIntent._api_list_all = classmethod(_payment_intent_list)

# 8. setup_intents list filtered by customer (the same gap)
_original_setup_intent_list = SetupIntent._api_list_all.__func__


def _setup_intent_list(cls, url, customer=None, limit=None, starting_after=None, **kwargs):
    listing = _original_setup_intent_list(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if customer is not None:
        listing._list = [intent for intent in listing._list if intent.customer == customer]
    listing._list.sort(key=lambda intent: intent.created, reverse=True)
    return listing


SetupIntent._api_list_all = classmethod(_setup_intent_list)


# 14. subscription updates: metadata kept, customer.subscription.updated emitted
_original_subscription_update = Subscription._update


def _subscription_update(self, metadata=None, discounts=None, **data):
    if discounts is not None:  # 16: a list replaces them, "" clears them
        self.discounts = _discounts(
            discounts, customer=self.customer, subscription_id=self.id, existing=getattr(self, "discounts", None) or []
        )
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise UserError(400, "Bad request")
        self.metadata = {**(self.metadata or {}), **metadata}
        self.metadata = {key: value for key, value in self.metadata.items() if value != ""}  # "" unsets a key
    _original_subscription_update(self, **data)
    resources.schedule_webhook(Event("customer.subscription.updated", self))


Subscription._update = _subscription_update

# 15. coupons: `name`, and an id made when none is given
_original_coupon_init = resources.Coupon.__init__


def _coupon_init(self, id=None, name=None, **data):
    _original_coupon_init(self, id=id or "co_" + resources.random_id(14), **data)
    self.name = name


resources.Coupon.__init__ = _coupon_init


# 16. subscription discounts, taken off its invoices
def _discounts(value, *, customer, subscription_id=None, existing=()) -> list[dict]:
    """The Discount objects `discounts` asks for (errors before anything changes)."""
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError(400, "Bad request")
    kept = {discount["id"]: discount for discount in existing}
    made = []
    for item in value:
        if item.get("coupon"):
            coupon = resources.Coupon._api_retrieve(item["coupon"])  # 404 for an unknown coupon
            made.append(
                {
                    "id": "di_" + resources.random_id(14),
                    "object": "discount",
                    "source": {"type": "coupon", "coupon": coupon.id},
                    "customer": customer,
                    "subscription": subscription_id,
                    "start": int(time.time()),
                    "end": None,
                    "invoice": None,
                    "invoice_item": None,
                    "promotion_code": None,
                }
            )
        elif item.get("discount") in kept:
            made.append(kept[item["discount"]])
        else:
            raise UserError(400, "Bad request")
    return made


def _percent_off(discounts) -> float:
    coupons = [resources.Coupon._api_retrieve(d["source"]["coupon"]) for d in discounts or []]
    return sum(coupon.percent_off or 0 for coupon in coupons)


_original_subscription_init = Subscription.__init__


def _subscription_init(self, discounts=None, **data):
    # Set before localstripe's own init, which makes (and pays) the first invoice.
    self.discounts = _discounts(discounts, customer=data.get("customer"))
    _original_subscription_init(self, **data)
    for discount in self.discounts:
        discount["subscription"] = self.id


Subscription.__init__ = _subscription_init

_original_invoice_init = Invoice.__init__


def _invoice_init(self, *args, **data):
    _original_invoice_init(self, *args, **data)
    subscription_id = data.get("subscription")
    subscription = store.get("subscription:" + subscription_id) if subscription_id else None
    self._percent_off = _percent_off(getattr(subscription, "discounts", None)) if subscription else 0


def _invoice_discount(self) -> int:
    return int(self.subtotal * getattr(self, "_percent_off", 0) / 100 + 0.5)


Invoice.__init__ = _invoice_init
Invoice.total = property(lambda self: max(0, self.subtotal - _invoice_discount(self) + self.tax - self.starting_balance))
Invoice.total_discount_amounts = property(
    lambda self: [{"amount": _invoice_discount(self), "discount": None}] if _invoice_discount(self) else []
)


# 5. invoice.paid after invoice.payment_succeeded
_original_schedule = resources.schedule_webhook


def _schedule_webhook(event):
    _original_schedule(event)
    if event.type == "invoice.payment_succeeded":
        _original_schedule(Event("invoice.paid", Invoice._api_retrieve(event.data["object"]["id"])))


resources.schedule_webhook = _schedule_webhook


# 6. persistence
def use_pickle_path(path: str | None) -> None:
    """Persist the store at `path` (None: keep everything in memory)."""

    def dump(self):
        if path:
            with open(path, "wb") as handle:
                pickle.dump(dict(self), handle, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self):
        if not path:
            return
        try:
            with open(path, "rb") as handle:
                old = pickle.load(handle)
        except FileNotFoundError:
            return
        dict.clear(self)
        dict.update(self, old)

    resources.Store.dump_to_disk = dump
    resources.Store.try_load_from_disk = load


# Middlewares: faults, idempotency, SetupIntent confirm --------------------------------

_faults: list[dict] = []
_idempotent: dict[tuple, tuple[int, bytes, str]] = {}
_posts: Counter = Counter()
_CONFIRM_SETUP = re.compile(r"^/v1/setup_intents/(seti_\w+)/confirm$")
_PAY_INVOICE = re.compile(r"^/v1/invoices/(in_\w+)/pay$")


@web.middleware
async def contract_middleware(request, handler):
    """Decode the request as Stripe would, before any middleware here rewrites it, and record
    whether the current API would take it (`stripe_contract.RECORDER`)."""
    if not stripe_contract.is_exempt(request.method, request.path, request.headers):
        params, problems = await stripe_contract.decode_aiohttp_request(request)
        stripe_contract.RECORDER.record(request.method, request.path, params, request.headers, problems)
    return await handler(request)


@web.middleware
async def invoice_pay_middleware(request, handler):
    match = _PAY_INVOICE.match(request.path)
    if request.method != "POST" or not match:
        return await handler(request)
    invoice = Invoice._api_retrieve(match.group(1))
    subscription = Subscription._api_retrieve(invoice.subscription) if invoice.subscription else None
    before = subscription.status if subscription else None
    response = await handler(request)
    if subscription is not None:
        if invoice.status == "open" and subscription.status in ("active", "past_due"):
            subscription.status = "past_due"
            resources.schedule_webhook(Event("invoice.payment_failed", invoice))
        if subscription.status != before:
            resources.schedule_webhook(Event("customer.subscription.updated", subscription))
        store.dump_to_disk()
    return response


@web.middleware
async def fault_middleware(request, handler):
    for fault in _faults:
        if request.path.startswith(fault["path_prefix"]) and request.method == fault.get("method", request.method):
            if fault.get("fail_times", 0) > 0:
                fault["fail_times"] -= 1
                if fault.get("after_handler"):  # the work is done, the answer is an error anyway
                    await handler(request)
                failure = web.json_response(
                    {"error": {"type": fault.get("type") or "api_error", "message": "injected failure"}},
                    status=fault.get("status", 500),
                )
                if fault.get("should_retry") is not None:
                    failure.headers["Stripe-Should-Retry"] = str(fault["should_retry"]).lower()
                key = request.headers.get("Idempotency-Key")
                if fault.get("remember") and key:  # Stripe replays the stored answer of a key, 500s included
                    _idempotent[(request.headers.get("Authorization", ""), key)] = (
                        failure.status,
                        bytes(failure.body),
                        failure.content_type,
                    )
                return failure
            response = await handler(request)
            if fault.get("delay_after"):
                await asyncio.sleep(float(fault["delay_after"]))
            return response
    return await handler(request)


@web.middleware
async def idempotency_middleware(request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method == "POST" and request.path.startswith("/v1/"):
        _posts[request.path] += 1
    if request.method != "POST" or not key or not request.path.startswith("/v1/"):
        return await handler(request)
    cache_key = (request.headers.get("Authorization", ""), key)
    if cache_key in _idempotent:
        status, body, content_type = _idempotent[cache_key]
        response = web.Response(status=status, body=body, content_type=content_type)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    response = await handler(request)
    if response.status < 500 and isinstance(response, web.Response) and response.body is not None:
        _idempotent[cache_key] = (response.status, bytes(response.body), response.content_type)
    return response


@web.middleware
async def setup_intent_middleware(request, handler):
    response = await handler(request)
    match = _CONFIRM_SETUP.match(request.path)
    if request.method == "POST" and match and response.status == 200:
        intent = SetupIntent._api_retrieve(match.group(1))
        if intent.status == "succeeded" and intent.customer and intent.payment_method:
            method = PaymentMethod._api_retrieve(intent.payment_method)
            if method.customer is None:
                method.customer = intent.customer
            resources.schedule_webhook(Event("setup_intent.succeeded", intent))
            store.dump_to_disk()
    return response


# Routes ----------------------------------------------------------------------------


async def _create_price(request):
    data = await server.get_post_data(request) or {}
    data.pop("expand", None)
    return server.json_response(Price(**data)._export())


def _retrieve_price(request):
    return server.json_response(Price._api_retrieve(request.match_info["id"])._export())


def _list_prices(request):
    data = server.unflatten_data(request.query)
    data.pop("expand", None)
    limit = data.pop("limit", None)
    starting_after = data.pop("starting_after", None)
    return server.json_response(Price._api_list_all("/v1/prices", limit=limit, starting_after=starting_after)._export())


async def _set_faults(request):
    body = await request.json()
    _faults.append(body)
    return web.json_response({"faults": _faults})


async def _clear_faults(request):
    _faults.clear()
    return web.json_response({"faults": []})


async def _requests(request):
    return web.json_response(dict(_posts))


async def _contract(request):
    return web.json_response(stripe_contract.RECORDER.report())


async def _clear_contract(request):
    return web.json_response(stripe_contract.RECORDER.clear())


# Disputes, paused subscriptions, failed card setups (test helpers shaping today's API) ---

_disputes: dict[str, dict] = {}


def _retrieve_dispute(request):
    dispute = _disputes.get(request.match_info["id"])
    if dispute is None:
        raise UserError(404, "No such dispute: " + request.match_info["id"])
    return server.json_response(dispute)


async def _create_dispute(request):
    body = await request.json()
    charge = resources.Charge._api_retrieve(body["charge"])
    dispute_id = body.get("id") or "dp_" + resources.random_id(24)
    created = int(body.get("created") or charge.created)
    _disputes[dispute_id] = {
        "id": dispute_id,
        "object": "dispute",
        "amount": int(body.get("amount") or charge.amount),
        "balance_transactions": [],
        "charge": charge.id,
        "created": created,
        "currency": charge.currency,
        "evidence": {"customer_email_address": None, "customer_name": None, "uncategorized_text": None},
        "evidence_details": {
            "due_by": int(body.get("due_by") or created + 21 * 86400),
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
            "enhanced_eligibility": {},
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge.payment_intent,
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4", "network": "visa"},
            "type": "card",
        },
        "reason": body.get("reason") or "fraudulent",
        "status": body.get("status") or "needs_response",
        "enhanced_eligibility_types": [],
    }
    charge.disputed = True
    return server.json_response(_disputes[dispute_id])


async def _update_dispute(request):
    dispute = _disputes.get(request.match_info["id"])
    if dispute is None:
        raise UserError(404, "No such dispute: " + request.match_info["id"])
    dispute.update(await request.json())
    return server.json_response(dispute)


async def _shape_subscription(request):
    subscription = Subscription._api_retrieve(request.match_info["id"])
    body = await request.json()
    if "status" in body:
        subscription.status = body["status"]
    if "pause_collection" in body:
        subscription.pause_collection = body["pause_collection"]
    store.dump_to_disk()
    return server.json_response(subscription._export())


async def _fail_setup_intent(request):
    intent = SetupIntent._api_retrieve(request.match_info["id"])
    body = await request.json()
    intent.status, intent.next_action, intent.payment_method = "requires_payment_method", None, None
    intent.last_setup_error = {
        "type": "card_error",
        "code": body.get("code") or "card_declined",
        "decline_code": body.get("decline_code"),
        "message": body["message"],
    }
    store.dump_to_disk()
    return server.json_response(intent._export())


def build_app(*, pickle_path: str | None = None) -> web.Application:
    """localstripe's app with the compatibility layer installed."""
    use_pickle_path(pickle_path)
    store.try_load_from_disk()
    app = server.app
    if getattr(app, "_studio_compat", False):
        return app
    app.middlewares.insert(0, fault_middleware)
    app.middlewares.insert(1, idempotency_middleware)
    app.middlewares.insert(0, contract_middleware)  # first of all: the request as it was sent
    app.middlewares.append(setup_intent_middleware)
    app.middlewares.append(invoice_pay_middleware)
    localstripe_sca.install(app)  # 3-D Secure and today's parameters (its docstring lists them)
    app.router.add_post("/v1/prices", _create_price)
    app.router.add_get("/v1/prices/{id}", _retrieve_price)
    app.router.add_get("/v1/prices", _list_prices)
    app.router.add_post("/_config/compat/faults", _set_faults)
    app.router.add_delete("/_config/compat/faults", _clear_faults)
    app.router.add_get("/_config/compat/requests", _requests)
    app.router.add_get("/_config/compat/contract", _contract)
    app.router.add_delete("/_config/compat/contract", _clear_contract)
    app.router.add_get("/v1/disputes/{id}", _retrieve_dispute)
    app.router.add_post("/_config/compat/disputes", _create_dispute)
    app.router.add_post("/_config/compat/disputes/{id}", _update_dispute)
    app.router.add_post("/_config/compat/subscriptions/{id}", _shape_subscription)
    app.router.add_post("/_config/compat/setup_intents/{id}/fail", _fail_setup_intent)
    app._studio_compat = True
    return app


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
