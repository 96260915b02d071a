"""Stripe's request contract, checked offline: every request a test run sends to the local
Stripe is held against the parameter types stripe-python generates from Stripe's OpenAPI spec.

localstripe (a 2017-era emulator) accepts parameters the current API refuses: a call that
passes every test here can still be a 400 from real Stripe. stripe-python 16 ships the
current API's parameters as TypedDicts (`stripe.params.SetupIntentCreateParams`, nested
ones such as `SubscriptionCreateParamsItem` too); this module resolves them at runtime with
`typing.get_type_hints(..., include_extras=True)` and validates a decoded request against
them:

- `ROUTES`: (HTTP method, path pattern) → the params TypedDict's name, the SDK's own
  pattern and type (a test checks each entry against the SDK's service modules). A `/v1`
  request no route matches is a violation: a new Stripe call needs its line here.
- `check_request(method, path, params, headers)`: the problems of one request — unknown
  parameters (with their dotted path, `items[0].plan`), values that cannot be the declared
  type (form bodies carry strings: "12" is an int, "true"/"false" a bool, "" is the "unset"
  of `Literal['']`), missing required keys, an unknown route, a `Stripe-Version` other than
  the pinned `stripe._api_version` on requests from the SDK. The keys of `stripe.RequestOptions`
  (api_key, idempotency_key, stripe_version, ...) are headers, never body parameters.
- `decode_form(pairs)`: a form body or query string as Stripe reads it (`a[b][0][c]=v`).
- `RECORDER`: what the local Stripe's recorder middleware (`localstripe_compat.contract_middleware`)
  keeps — the count of requests checked and their violations, served at
  `GET /_config/compat/contract` — and, when `STUDIO_STRIPE_CONTRACT_LOG` names a file, appends
  each violation to it as a JSON line. The test session sets that variable, so every local
  Stripe any test starts (the session server, the fault tests' private ones, the demo's)
  reports into one file, whichever process (test, consumer, gunicorn, demo) sent the request;
  `tests/conftest.py` turns a test's new lines into an error of that test.

Exempt (not Stripe's API): paths outside `/v1/`, localstripe's test helpers (a path segment
starting with `_`: `/v1/payment_intents/<id>/_authenticate`), and requests carrying the
`EXEMPT_HEADER` (tests talking to the emulator on purpose).
"""

from __future__ import annotations

import atexit
import decimal
import json
import os
import re
import threading
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import typing_extensions

LOG_ENV = "STUDIO_STRIPE_CONTRACT_LOG"
EXEMPT_HEADER = "X-Studio-Contract-Exempt"

# (method, path pattern as the SDK writes it, stripe.params name). Sorted by resource.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/customers", "CustomerCreateParams"),
    ("GET", "/v1/customers", "CustomerListParams"),
    ("GET", "/v1/customers/search", "CustomerSearchParams"),
    ("GET", "/v1/customers/{customer}", "CustomerRetrieveParams"),
    ("POST", "/v1/customers/{customer}", "CustomerUpdateParams"),
    ("DELETE", "/v1/customers/{customer}", "CustomerDeleteParams"),
    ("GET", "/v1/customers/{customer}/payment_methods", "CustomerPaymentMethodListParams"),
    ("POST", "/v1/payment_methods", "PaymentMethodCreateParams"),
    ("GET", "/v1/payment_methods", "PaymentMethodListParams"),
    ("GET", "/v1/payment_methods/{payment_method}", "PaymentMethodRetrieveParams"),
    ("POST", "/v1/payment_methods/{payment_method}/attach", "PaymentMethodAttachParams"),
    ("POST", "/v1/payment_methods/{payment_method}/detach", "PaymentMethodDetachParams"),
    ("POST", "/v1/setup_intents", "SetupIntentCreateParams"),
    ("GET", "/v1/setup_intents", "SetupIntentListParams"),
    ("GET", "/v1/setup_intents/{intent}", "SetupIntentRetrieveParams"),
    ("POST", "/v1/setup_intents/{intent}/confirm", "SetupIntentConfirmParams"),
    ("POST", "/v1/setup_intents/{intent}/cancel", "SetupIntentCancelParams"),
    ("POST", "/v1/products", "ProductCreateParams"),
    ("GET", "/v1/products/{id}", "ProductRetrieveParams"),
    ("POST", "/v1/prices", "PriceCreateParams"),
    ("GET", "/v1/prices", "PriceListParams"),
    ("GET", "/v1/prices/{price}", "PriceRetrieveParams"),
    ("POST", "/v1/coupons", "CouponCreateParams"),
    ("GET", "/v1/coupons/{coupon}", "CouponRetrieveParams"),
    ("POST", "/v1/subscriptions", "SubscriptionCreateParams"),
    ("GET", "/v1/subscriptions", "SubscriptionListParams"),
    ("GET", "/v1/subscriptions/{subscription_exposed_id}", "SubscriptionRetrieveParams"),
    ("POST", "/v1/subscriptions/{subscription_exposed_id}", "SubscriptionUpdateParams"),
    ("DELETE", "/v1/subscriptions/{subscription_exposed_id}", "SubscriptionCancelParams"),
    ("POST", "/v1/payment_intents", "PaymentIntentCreateParams"),
    ("GET", "/v1/payment_intents", "PaymentIntentListParams"),
    ("GET", "/v1/payment_intents/{intent}", "PaymentIntentRetrieveParams"),
    ("POST", "/v1/payment_intents/{intent}/confirm", "PaymentIntentConfirmParams"),
    ("POST", "/v1/payment_intents/{intent}/cancel", "PaymentIntentCancelParams"),
    ("POST", "/v1/invoices", "InvoiceCreateParams"),
    ("GET", "/v1/invoices", "InvoiceListParams"),
    ("GET", "/v1/invoices/{invoice}", "InvoiceRetrieveParams"),
    ("POST", "/v1/invoices/{invoice}/pay", "InvoicePayParams"),
    ("POST", "/v1/invoices/{invoice}/void", "InvoiceVoidInvoiceParams"),
    ("POST", "/v1/invoiceitems", "InvoiceItemCreateParams"),
    ("GET", "/v1/charges/{charge}", "ChargeRetrieveParams"),
    ("GET", "/v1/charges", "ChargeListParams"),
    ("GET", "/v1/disputes/{dispute}", "DisputeRetrieveParams"),
    ("POST", "/v1/refunds", "RefundCreateParams"),
    ("GET", "/v1/refunds", "RefundListParams"),
    ("GET", "/v1/refunds/{refund}", "RefundRetrieveParams"),
)


def pinned_api_version() -> str:
    """The API version stripe-python is generated for and sends on every request."""
    from stripe._api_version import _ApiVersion

    return _ApiVersion.CURRENT


# Routes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    params: str
    regex: re.Pattern
    placeholders: int

    def params_type(self) -> type:
        import stripe.params

        return getattr(stripe.params, self.params)


def _compile(routes: Iterable[tuple[str, str, str]]) -> list[Route]:
    compiled = []
    for method, pattern, params in routes:
        regex = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern)) + "$")
        compiled.append(Route(method, pattern, params, regex, pattern.count("{")))
    # A literal segment wins over a placeholder: /v1/customers/search before /v1/customers/{customer}.
    return sorted(compiled, key=lambda route: route.placeholders)


_ROUTES = _compile(ROUTES)


def route_for(method: str, path: str) -> Route | None:
    """The route of a request, or None when the table does not know it."""
    for route in _ROUTES:
        if route.method == method.upper() and route.regex.match(path):
            return route
    return None


def is_exempt(method: str, path: str, headers: Mapping[str, str] | None = None) -> bool:
    """True for requests that are not calls of Stripe's API (see the module docstring)."""
    if method.upper() in ("OPTIONS", "HEAD") or not path.startswith("/v1/"):
        return True
    if any(segment.startswith("_") for segment in path.split("/")):
        return True  # localstripe's test helpers: /v1/payment_intents/<id>/_authenticate
    return bool(headers) and EXEMPT_HEADER in headers


# Decoding ----------------------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: Iterable[tuple[str, Any]]) -> tuple[dict, list[str]]:
    """Form pairs (`a[b][0][c]=v`, `tags[]=x`) as the nested structure Stripe reads, and the
    problems of keys that cannot be decoded. Indexed segments stay dict keys ("0", "1"): the
    declared type decides whether they are a list (the SDK always sends `items[0][price]`)."""
    data: dict = {}
    problems: list[str] = []
    for raw_key, value in pairs:
        if not isinstance(value, str):
            value = "<file>" if hasattr(value, "file") else str(value)
        match = _KEY.match(raw_key)
        segments = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2)) if match else []
        appends = bool(segments) and segments[-1] == ""  # tags[]=x
        if appends:
            segments.pop()
        if not segments or "" in segments:
            problems.append(f"cannot decode the parameter name {raw_key!r}")
            continue
        node = data
        for segment in segments[:-1]:
            node = node.setdefault(segment, {})
            if not isinstance(node, dict):
                break
        last = segments[-1]
        if not isinstance(node, dict):
            problems.append(f"{raw_key}: its parent is also sent as a value")
        elif appends:
            if not isinstance(node.setdefault(last, []), list):
                problems.append(f"{raw_key}: also sent as a value or an object")
            else:
                node[last].append(value)
        elif isinstance(node.get(last), (dict, list)):
            problems.append(f"{raw_key}: also sent as an object or a list")
        else:
            node[last] = value
    return data, problems


async def decode_aiohttp_request(request) -> tuple[dict, list[str]]:
    """An aiohttp request's parameters as Stripe reads them: the query string, plus for POST
    the form body (read through aiohttp's cache, so the handlers after us read it again)."""
    pairs = list(request.rel_url.query.items())
    problems: list[str] = []
    if request.method == "POST":
        if request.content_type == "application/json":
            body = await request.read()
            problems.append("the body is JSON: Stripe's v1 API reads form-encoded bodies")
            try:
                decoded = json.loads(body or b"{}")
            except ValueError:
                return {}, problems + ["the body is not valid JSON"]
            data, more = decode_form(pairs)
            if isinstance(decoded, dict):
                data.update(decoded)
            return data, problems + more
        pairs += list((await request.post()).items())
    data, more = decode_form(pairs)
    return data, problems + more


# Types ---------------------------------------------------------------------------------

_INT = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_UNION_ORIGINS = (typing.Union, types.UnionType)


@dataclass(frozen=True)
class Fields:
    types: dict[str, Any]
    required: frozenset[str]


_fields_cache: dict[type, Fields] = {}
_fields_lock = threading.Lock()


def _request_options() -> type:
    from stripe._request_options import RequestOptions

    return RequestOptions


def fields(typed_dict: type) -> Fields:
    """The body parameters of a params TypedDict: name → resolved type, and the required names.
    Keys inherited from `stripe.RequestOptions` are left out (they travel as headers)."""
    with _fields_lock:
        cached = _fields_cache.get(typed_dict)
    if cached is not None:
        return cached
    request_options = _request_options()
    resolved: dict[str, Any] = {}

    def visit(cls: type) -> set[str]:
        """Resolve `cls`'s own annotations in its own module; returns every key it has."""
        if cls is request_options:
            return set(cls.__annotations__)
        inherited: set[str] = set()
        for base in getattr(cls, "__orig_bases__", ()):
            if typing_extensions.is_typeddict(base):
                inherited |= visit(base)
        own = {name: tp for name, tp in cls.__annotations__.items() if name not in inherited}
        # A plain holder class: get_type_hints evaluates its string annotations in `cls`'s
        # module and never touches RequestOptions' (TYPE_CHECKING-only) names.
        holder = type(cls.__name__, (), {"__annotations__": own, "__module__": cls.__module__})
        for name, tp in typing.get_type_hints(holder, include_extras=True).items():
            resolved.setdefault(name, tp)
        return inherited | set(own)

    visit(typed_dict)
    required = set(getattr(typed_dict, "__required_keys__", ()))
    result: dict[str, Any] = {}
    for name, tp in resolved.items():
        origin = typing_extensions.get_origin(tp)
        if origin is typing_extensions.NotRequired:
            required.discard(name)
            tp = typing_extensions.get_args(tp)[0]
        elif origin is typing_extensions.Required:
            required.add(name)
            tp = typing_extensions.get_args(tp)[0]
        result[name] = tp
    found = Fields(result, frozenset(required & set(result)))
    with _fields_lock:
        _fields_cache[typed_dict] = found
    return found


def _untyped_stripe_object() -> type:
    from stripe._stripe_object import UntypedStripeObject

    return UntypedStripeObject


def describe(tp: Any) -> str:
    """A short name of a type for messages."""
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin is typing_extensions.Annotated:
        return describe(args[0])
    if origin in _UNION_ORIGINS:
        return " or ".join(dict.fromkeys(describe(arg) for arg in args))
    if origin is typing_extensions.Literal:
        shown = ", ".join(repr(arg) for arg in args[:6]) + (", ..." if len(args) > 6 else "")
        return f"one of {shown}" if len(args) > 1 else repr(args[0])
    if origin in (list, typing.List):  # noqa: UP006
        return f"list of {describe(args[0])}" if args else "list"
    if origin in (dict, typing.Dict) or tp is dict:  # noqa: UP006
        return "map"
    if origin is _untyped_stripe_object() or tp is _untyped_stripe_object():
        return "map"
    if typing_extensions.is_typeddict(tp):
        return "object"
    names = {str: "string", int: "integer", bool: "boolean", float: "number", decimal.Decimal: "decimal", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", repr(tp)))


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _as_list(value: Any) -> list | None:
    """A list value: sent as `a[]=...` (a list) or `a[0]=...` (a dict of indices)."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and value and all(isinstance(key, str) and key.isdigit() for key in value):
        return [value[key] for key in sorted(value, key=int)]
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "list-or-object" if _as_list(value) is not None else "object"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _type_kind(tp: Any) -> str:
    origin = typing_extensions.get_origin(tp)
    if origin is typing_extensions.Annotated:
        return _type_kind(typing_extensions.get_args(tp)[0])
    if origin in (list, typing.List):  # noqa: UP006
        return "list"
    if (
        origin in (dict, typing.Dict)  # noqa: UP006 (a runtime check: both spellings occur)
        or origin is _untyped_stripe_object()
        or tp is _untyped_stripe_object()
        or typing_extensions.is_typeddict(tp)
        or tp is dict
    ):  # noqa: UP006
        return "object"
    if tp is Any:
        return "any"
    return "scalar"


def _scalar_ok(tp: Any, value: Any) -> bool:
    if isinstance(value, (dict, list)):
        return False
    if tp is str:
        return isinstance(value, str)
    if tp is bool:
        return isinstance(value, bool) or value in ("true", "false")
    if tp is int:
        if isinstance(value, str):
            return bool(_INT.match(value))
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (float, decimal.Decimal):
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and bool(_NUMBER.match(value))
        )
    if tp is type(None):
        return value is None
    return False


def problems_of(tp: Any, value: Any, path: str) -> list[str]:
    """Why `value` (decoded from a request) cannot be of type `tp`; [] when it can."""
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if tp is Any or tp is object:
        return []
    if origin is typing_extensions.Annotated:
        return problems_of(args[0], value, path)
    if origin in (typing_extensions.NotRequired, typing_extensions.Required):
        return problems_of(args[0], value, path)
    if origin in _UNION_ORIGINS:
        found = [problems_of(arg, value, path) for arg in args]
        if any(not problems for problems in found):
            return []
        # Only one member has the shape of the value (an object, a list): its own problems
        # (an unknown key deep inside) say more than "expected X or Y".
        kind = _kind(value)
        shaped = [
            problems
            for arg, problems in zip(args, found, strict=True)
            if _type_kind(arg) == kind or (kind == "list-or-object" and _type_kind(arg) in ("list", "object"))
        ]
        if shaped and all(problems == shaped[0] for problems in shaped):  # Dict[str, str] | UntypedStripeObject[str]
            return shaped[0]
        return [f"{path}: expected {describe(tp)}, got {_shown(value)}"]
    if origin is typing_extensions.Literal:
        for allowed in args:
            if isinstance(allowed, bool):
                if value is allowed or value == str(allowed).lower():
                    return []
            elif isinstance(allowed, int):
                if value == allowed or value == str(allowed):
                    return []
            elif value == allowed:
                return []
        return [f"{path}: expected {describe(tp)}, got {_shown(value)}"]
    if origin in (list, typing.List):  # noqa: UP006
        items = _as_list(value)
        if items is None:
            return [f"{path}: expected {describe(tp)}, got {_shown(value)}"]
        item_type = args[0] if args else Any
        problems: list[str] = []
        for index, item in enumerate(items):
            problems += problems_of(item_type, item, f"{path}[{index}]")
        return problems
    untyped = _untyped_stripe_object()
    if origin in (dict, typing.Dict, typing.Mapping) or tp is dict or origin is untyped or tp is untyped:  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected {describe(tp)}, got {_shown(value)}"]
        value_type = args[-1] if args else Any
        problems = []
        for key, item in value.items():
            problems += problems_of(value_type, item, _join(path, key))
        return problems
    if typing_extensions.is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {_shown(value)}"]
        return check_params(tp, value, path)
    if tp in (str, int, bool, float, decimal.Decimal, type(None)):
        if _scalar_ok(tp, value):
            return []
        return [f"{path}: expected {describe(tp)}, got {_shown(value)}"]
    return [f"{path}: the contract checker does not know the type {tp!r}"]


def check_params(typed_dict: type, params: Mapping[str, Any], path: str = "") -> list[str]:
    """The problems of `params` (decoded) against a params TypedDict: unknown keys, wrong
    types, missing required keys; paths are dotted (`items[0].price_data.currency`)."""
    known = fields(typed_dict)
    problems: list[str] = []
    for name, value in params.items():
        where = _join(path, name)
        if name not in known.types:
            problems.append(f"unknown parameter {where}")
            continue
        problems += problems_of(known.types[name], value, where)
    for name in sorted(known.required - set(params)):
        problems.append(f"missing required parameter {_join(path, name)}")
    return problems


def check_headers(headers: Mapping[str, str] | None) -> list[str]:
    """The pinned API version on requests from the SDK (and on any request that names one)."""
    headers = headers or {}
    version = headers.get("Stripe-Version")
    from_sdk = "X-Stripe-Client-User-Agent" in headers or str(headers.get("User-Agent", "")).startswith("Stripe/")
    pinned = pinned_api_version()
    if version is None:
        return [f"no Stripe-Version header (the SDK pins {pinned})"] if from_sdk else []
    if version != pinned:
        return [f"Stripe-Version is {version!r}, not the pinned {pinned!r}"]
    return []


def check_request(method: str, path: str, params: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of one request to Stripe's API ([] for exempt requests)."""
    if is_exempt(method, path, headers):
        return []
    problems = check_headers(headers)
    route = route_for(method, path)
    if route is None:
        return problems + [
            f"no route {method.upper()} {path} in tests/support/stripe_contract.py ROUTES (add the call's params type there)"
        ]
    return problems + check_params(route.params_type(), params)


# The recorder --------------------------------------------------------------------------


class Recorder:
    """The violations seen by one local Stripe process (and, with `LOG_ENV` set, a shared file)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.checked = 0
        self.total = 0  # never cleared: the count logged when the process exits
        self.violations: list[dict] = []
        self._exit_hook = False

    def record(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str] | None,
        decode_problems: list[str] | None = None,
    ) -> list[str]:
        """Check one request; keep and log its violation, if any. Returns its problems."""
        if is_exempt(method, path, headers):
            return []
        try:
            problems = list(decode_problems or []) + check_request(method, path, params, headers)
        except Exception as error:  # a checker bug must show, not hide the request
            problems = [f"the contract checker failed: {type(error).__name__}: {error}"]
        with self.lock:
            self.checked += 1
            self.total += 1
            if not self._exit_hook:
                atexit.register(self._log_checked)
                self._exit_hook = True
            if problems:
                violation = {"method": method.upper(), "path": path, "problems": problems}
                self.violations.append(violation)
                _append_log({**violation, "pid": os.getpid()})
        return problems

    def report(self) -> dict:
        with self.lock:
            return {"checked": self.checked, "violations": list(self.violations)}

    def clear(self) -> dict:
        with self.lock:
            report = {"checked": self.checked, "violations": list(self.violations)}
            self.checked = 0
            self.violations.clear()
            return report

    def _log_checked(self) -> None:
        _append_log({"checked": self.total, "pid": os.getpid()})


def _append_log(entry: dict) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)  # one write on O_APPEND: lines of several processes never mix
    finally:
        os.close(descriptor)


RECORDER = Recorder()


# Reading the shared log (the test session) -----------------------------------------------


class ContractLog:
    """The session's shared violation file: `mark()` now, `since(mark)` later."""

    def __init__(self, path):
        self.path = str(path)

    def mark(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def entries(self, start: int = 0) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(start)
                data = handle.read()
        except FileNotFoundError:
            return []
        entries = []
        for line in data.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    def violations(self, start: int = 0) -> list[dict]:
        return [entry for entry in self.entries(start) if "problems" in entry]

    def checked(self) -> int:
        """Requests checked by the local Stripe processes that have exited so far."""
        return sum(entry.get("checked", 0) for entry in self.entries())


def summarize(violations: list[dict]) -> list[str]:
    """One line per distinct (request, problem), with a count: `POST /v1/setup_intents: unknown
    parameter payment_method_types (x3)`. Ids in paths are folded into the route pattern."""
    counts: dict[str, int] = {}
    for violation in violations:
        route = route_for(violation["method"], violation["path"])
        where = f"{violation['method']} {route.pattern if route else violation['path']}"
        for problem in violation["problems"]:
            line = f"{where}: {problem}"
            counts[line] = counts.get(line, 0) + 1
    return [line + (f" (x{count})" if count > 1 else "") for line, count in counts.items()]
