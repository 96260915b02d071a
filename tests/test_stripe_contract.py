"""The Stripe request contract checker (`tests/support/stripe_contract.py`): what it refuses,
what it lets through, its route table against the SDK, and the recorder on the local Stripe."""

from __future__ import annotations

import decimal
import inspect
import os
import re
import types
import typing
from pathlib import Path

import pytest
import stripe
import typing_extensions
from stripe._encode import _api_encode

from tests.support import stripe_contract as contract

ROOT = Path(__file__).resolve().parents[1]
PINNED = contract.pinned_api_version()
SDK_HEADERS = {"X-Stripe-Client-User-Agent": "{}", "User-Agent": "Stripe/v1 PythonBindings/16.1.0", "Stripe-Version": PINNED}


def wire(params: dict) -> dict:
    """`params` as the SDK puts them on the wire and Stripe reads them back."""
    data, problems = contract.decode_form(list(_api_encode(params)))
    assert problems == []
    return data


def check(method: str, path: str, params: dict, headers: dict | None = None) -> list[str]:
    return contract.check_request(method, path, wire(params), SDK_HEADERS if headers is None else headers)


# What the checker refuses -----------------------------------------------------------------


def test_the_old_setup_intent_call_is_an_unknown_parameter():
    old = {"customer": "cus_1", "usage": "off_session", "payment_method_types": ["card"], "metadata": {"payee_id": "7"}}
    assert check("POST", "/v1/setup_intents", old) == ["unknown parameter payment_method_types"]


def test_the_current_setup_intent_call_passes():
    new = {"customer": "cus_1", "usage": "off_session", "allowed_payment_method_types": ["card"], "metadata": {"payee_id": "7"}}
    assert check("POST", "/v1/setup_intents", new) == []


def test_values_that_cannot_be_the_declared_type():
    assert check("POST", "/v1/payment_intents", {"amount": "abc", "currency": "usd"}) == ["amount: expected integer, got 'abc'"]
    assert check("POST", "/v1/subscriptions", {"customer": "cus_1", "items": "price_1"}) == [
        "items: expected list of object, got 'price_1'"
    ]
    assert check("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd", "confirm": "yes"}) == [
        "confirm: expected boolean, got 'yes'"
    ]
    assert check("POST", "/v1/setup_intents", {"customer": {"id": "cus_1", "name": "x"}}) == [
        "customer: expected string, got an object"
    ]
    assert check("POST", "/v1/customers", {"metadata": {"payee": {"id": "7"}}}) == [
        "metadata.payee: expected string, got an object"
    ]


def test_form_strings_of_ints_bools_and_empty_for_unset_pass():
    assert (
        check("POST", "/v1/payment_intents", {"amount": "12", "currency": "usd", "confirm": "true", "off_session": False}) == []
    )
    assert check("POST", "/v1/payment_intents", {"amount": 12, "currency": "usd", "off_session": "one_off"}) == []
    assert (
        check("POST", "/v1/customers/cus_1", {"address": "", "metadata": "", "invoice_settings": {"default_payment_method": ""}})
        == []
    )
    assert (
        check("POST", "/v1/payment_intents", {"amount": 12, "currency": "usd", "amount_details": {"discount_amount": ""}}) == []
    )  # Literal['']|int
    assert check(
        "POST", "/v1/payment_intents", {"amount": 12, "currency": "usd", "amount_details": {"discount_amount": "ten"}}
    ) == ["amount_details.discount_amount: expected '' or integer, got 'ten'"]


def test_missing_required_keys_top_level_and_nested():
    assert check("POST", "/v1/payment_intents", {"amount": 100}) == ["missing required parameter currency"]
    problems = check(
        "POST",
        "/v1/subscriptions",
        {
            "customer": "cus_1",
            "items": [{"price_data": {"product": "prod_1", "unit_amount": 100, "recurring": {"interval": "month"}}}],
        },
    )
    assert problems == ["missing required parameter items[0].price_data.currency"]


def test_unknown_nested_keys_carry_their_path():
    data, problems = contract.decode_form(
        [("invoice_settings[default_payment_method]", "pm_1"), ("invoice_settings[bogus]", "x")]
    )
    assert problems == []
    assert contract.check_request("POST", "/v1/customers/cus_1", data, SDK_HEADERS) == [
        "unknown parameter invoice_settings.bogus"
    ]
    assert check(
        "POST", "/v1/subscriptions", {"customer": "cus_1", "items": [{"price": "price_1"}, {"price": "price_2", "prise": "x"}]}
    ) == ["unknown parameter items[1].prise"]


def test_request_options_are_headers_not_body_parameters():
    known = contract.fields(stripe.params.SetupIntentCreateParams).types
    for option in stripe.RequestOptions.__annotations__:
        assert option not in known
    assert check("POST", "/v1/customers", {"email": "a@b.c", "idempotency_key": "k1"}) == ["unknown parameter idempotency_key"]


def test_an_unknown_route_is_a_violation_and_literal_segments_win():
    assert check("GET", "/v1/tax_rates/txr_1", {}) == [
        "no route GET /v1/tax_rates/txr_1 in tests/support/stripe_contract.py ROUTES (add the call's params type there)"
    ]
    assert check("POST", "/v1/setup_intents/seti_1", {}) != []  # update is not in the table (yet)
    assert contract.route_for("GET", "/v1/customers/search").params == "CustomerSearchParams"
    assert contract.route_for("GET", "/v1/customers/cus_1").params == "CustomerRetrieveParams"
    assert check("GET", "/v1/customers/search", {}) == ["missing required parameter query"]


def test_the_stripe_version_is_the_pinned_one():
    assert check("GET", "/v1/customers/cus_1", {}, {**SDK_HEADERS, "Stripe-Version": "2017-08-15"}) == [
        f"Stripe-Version is '2017-08-15', not the pinned '{PINNED}'"
    ]
    no_version = {key: value for key, value in SDK_HEADERS.items() if key != "Stripe-Version"}
    assert check("GET", "/v1/customers/cus_1", {}, no_version) == [f"no Stripe-Version header (the SDK pins {PINNED})"]
    assert check("GET", "/v1/customers/cus_1", {}, {}) == []  # a plain HTTP client of a test, no version named
    assert PINNED == stripe._api_version._ApiVersion.CURRENT


def test_test_helper_routes_are_exempt():
    for method, path, headers in (
        ("POST", "/_config/compat/faults", {}),
        ("GET", "/_config/compat/contract", {}),
        ("POST", "/v1/payment_intents/pi_1/_authenticate", {}),
        ("POST", "/v1/setup_intents/seti_1/_authenticate", {}),
        ("POST", "/v1/coupons", {contract.EXEMPT_HEADER: "1"}),
    ):
        assert contract.is_exempt(method, path, headers)
        assert contract.check_request(method, path, {"anything": {"at": "all"}}, headers) == []
    assert not contract.is_exempt("POST", "/v1/setup_intents", {})


def test_a_literal_that_is_not_open_to_any_string():
    class Params(typing_extensions.TypedDict):
        mode: typing_extensions.Literal["a", "b"]
        flag: typing_extensions.NotRequired[typing_extensions.Literal[True]]

    assert contract.check_params(Params, {"mode": "a", "flag": "true"}) == []
    assert contract.check_params(Params, {"mode": "c"}) == ["mode: expected one of 'a', 'b', got 'c'"]
    assert contract.check_params(Params, {}) == ["missing required parameter mode"]


# Decoding ------------------------------------------------------------------------------------


def test_form_keys_decode_to_nested_objects_and_lists():
    data, problems = contract.decode_form(
        [("a[b][0][c]", "v"), ("a[b][1][c]", "w"), ("expand[]", "x"), ("expand[]", "y"), ("unset", "")]
    )
    assert problems == []
    assert data == {"a": {"b": {"0": {"c": "v"}, "1": {"c": "w"}}}, "expand": ["x", "y"], "unset": ""}
    assert contract.check_request("GET", "/v1/invoices/in_1", {"expand": data["expand"]}) == []
    assert check("GET", "/v1/invoices/in_1", {"expand": ["payments"]}) == []  # sent as expand[0]=payments
    _, problems = contract.decode_form([("m", "1"), ("m[k]", "2"), ("bad[", "x")])
    assert problems == ["m[k]: its parent is also sent as a value", "cannot decode the parameter name 'bad['"]


# The route table against the SDK ----------------------------------------------------------------


def _service_endpoints(source: str) -> dict[str, tuple[str, str, str]]:
    """method name → (HTTP method, path pattern, params type) of one SDK service module."""
    found = {}
    for chunk in re.split(r"\n    (?=(?:async )?def )", source):
        head = re.match(r"def (\w+)\(", chunk)
        params = re.search(r'params: (?:Optional\[)?"(\w+Params)"', chunk)
        request = re.search(r'self\._request\(\s*"(\w+)",\s*"(/v1/[^"]*)"', chunk)
        if head and params and request:
            found[head.group(1)] = (request.group(1).upper(), request.group(2), params.group(1))
    return found


def test_every_route_is_the_sdk_s_own_method_path_and_params_type():
    sdk = set()
    for module in Path(stripe.__file__).parent.glob("_*_service.py"):
        sdk |= set(_service_endpoints(module.read_text()).values())
    for route in contract.ROUTES:
        assert route in sdk, route


def test_every_stripe_call_of_the_gateway_has_a_route():
    parts = ("stripe_gateway.py", "stripe_customers.py", "stripe_billing.py")  # the gateway class and its verbs
    source = "".join((ROOT / "workers" / part).read_text() for part in parts)
    calls = sorted(set(re.findall(r"self\.v1\.(\w+)\.(\w+)", source)))
    assert calls, "the gateway's calls were not found: the pattern needs updating"
    client = stripe.StripeClient("sk_test_contract")
    for resource, verb in calls:
        service = getattr(client.v1, resource)
        endpoints = _service_endpoints(Path(inspect.getsourcefile(type(service))).read_text())
        method, pattern, params = endpoints[verb]
        route = contract.route_for(method, re.sub(r"\{\w+\}", "x_1", pattern))
        assert route is not None and route.params == params, (resource, verb, method, pattern, params)


def _leaf_types(typed_dict: type, seen: set) -> set:
    leaves: set = set()
    if typed_dict in seen:
        return leaves
    seen.add(typed_dict)

    def walk(tp):
        origin = typing_extensions.get_origin(tp)
        if origin is typing_extensions.Literal:
            leaves.add("Literal")
        elif typing_extensions.is_typeddict(tp):
            leaves.update(_leaf_types(tp, seen))
        elif origin in (typing.Union, types.UnionType):
            for arg in typing_extensions.get_args(tp):
                walk(arg)
        elif origin is not None:  # List[X], Dict[str, X], UntypedStripeObject[X]
            leaves.add(origin)
            for arg in typing_extensions.get_args(tp):
                walk(arg)
        else:
            leaves.add(tp)

    for tp in contract.fields(typed_dict).types.values():
        walk(tp)
    return leaves


def test_every_type_in_the_routed_params_is_one_the_checker_knows():
    from stripe._stripe_object import UntypedStripeObject

    seen: set = set()
    leaves = set()
    for _, _, name in contract.ROUTES:
        leaves |= _leaf_types(getattr(stripe.params, name), seen)
    known = {"Literal", str, int, bool, float, decimal.Decimal, typing.Any, list, dict, UntypedStripeObject}
    assert leaves <= known, leaves - known
    assert len(seen) > 500  # the nested TypedDicts were followed
    # and a type it does not know is a problem, never a pass
    assert contract.problems_of(complex, "1", "x") == ["x: the contract checker does not know the type <class 'complex'>"]


# The recorder on the local Stripe, end to end --------------------------------------------------


@pytest.mark.stripe_contract_exempt
def test_a_bad_sdk_request_shows_up_on_the_local_stripe(stripe_server):  # noqa: F811
    log = contract.ContractLog(os.environ[contract.LOG_ENV])
    start = log.mark()
    stripe_server._request("DELETE", "/_config/compat/contract")
    client = stripe_server.client()
    customer = client.v1.customers.create({"email": "contract@example.com"})
    # localstripe takes the parameter the current API removed; the recorder does not.
    client.v1.setup_intents.create({"customer": customer.id, "usage": "off_session", "payment_method_types": ["card"]})  # type: ignore[typeddict-unknown-key]
    old = stripe.StripeClient(
        "sk_test_studio", base_addresses={"api": stripe_server.base_url}, max_network_retries=0, stripe_version="2017-08-15"
    )
    old.v1.customers.retrieve(customer.id)

    report = stripe_server._request("GET", "/_config/compat/contract")
    assert report["checked"] == 3
    assert report["violations"] == [
        {"method": "POST", "path": "/v1/setup_intents", "problems": ["unknown parameter payment_method_types"]},
        {
            "method": "GET",
            "path": f"/v1/customers/{customer.id}",
            "problems": [f"Stripe-Version is '2017-08-15', not the pinned '{PINNED}'"],
        },
    ]
    # ...and in the session's shared log, which is how every test (and process) is checked.
    assert [violation["path"] for violation in log.violations(start)] == ["/v1/setup_intents", f"/v1/customers/{customer.id}"]
    cleared = stripe_server._request("DELETE", "/_config/compat/contract")
    assert len(cleared["violations"]) == 2
    assert stripe_server._request("GET", "/_config/compat/contract") == {"checked": 0, "violations": []}


def test_the_recorder_sees_the_request_before_the_compat_layer_rewrites_it(stripe_server):  # noqa: F811
    """`items[].price` is rewritten to `plan` for localstripe: the check sees what was sent, and a
    good request passes with nothing recorded (this test would fail in teardown otherwise)."""
    client = stripe_server.client()
    customer = client.v1.customers.create({"email": "contract-sub@example.com"})
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": card.id}})
    product = client.v1.products.create({"name": "contract"})
    price = client.v1.prices.create(
        {"product": product.id, "unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month"}}
    )
    before = stripe_server._request("GET", "/_config/compat/contract")
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    client.v1.subscriptions.retrieve(subscription.id, {"expand": ["latest_invoice"]})
    after = stripe_server._request("GET", "/_config/compat/contract")
    assert after["checked"] == before["checked"] + 2
    assert after["violations"] == before["violations"]
