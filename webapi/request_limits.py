"""What a request body may be: how deep its JSON nests and how large it is.

Python's JSON parser recurses once per `[` or `{`: a body nested ~1,000 deep raises
`RecursionError` (a 500) wherever it is parsed. Bodies are scanned before any parser sees
them — a byte count of brackets first, and only when that count could exceed the limit a scan
of the bracket depth outside strings — and a body deeper than `MAX_JSON_DEPTH` is a 400
`json-too-deep`. No request of ours nests more than a few levels; Stripe's events about a
dozen, expanded objects included.

Sizes: `MAX_CONTENT_LENGTH` (64 KiB) for every route but Stripe's webhook, whose events (an
invoice with its lines, a subscription with its items) can be larger: `WEBHOOK_MAX_BYTES`
(1 MiB) there. A body over the limit is a 413 problem.
"""

from __future__ import annotations

import re

from flask import Flask, Response, request

from webapi.problems import problem

MAX_JSON_DEPTH = 64
MAX_CONTENT_LENGTH = 64 * 1024
WEBHOOK_MAX_BYTES = 1024 * 1024

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `body`'s brackets outside JSON strings nest deeper than `limit`.

    Not a validator: malformed JSON is the parser's to refuse, this only keeps the parser from
    recursing without bound. Linear time, no recursion."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def too_deep_problem(limit: int = MAX_JSON_DEPTH) -> Response:
    """The 400 answered for a body nested deeper than `limit`."""
    return problem(400, "json-too-deep", "JSON nested too deeply", f"the JSON body nests deeper than {limit} levels")


def refuse_deep_json(*, always: bool = False) -> Response | None:
    """A before-request check: the too-deep problem for a JSON body nested past the limit.

    `always`: scan whatever the Content-Type (the webhook parses its raw body itself);
    otherwise only bodies declared JSON, the only ones the API's routes parse."""
    if not (always or request.is_json):
        return None
    if json_depth_exceeds(request.get_data(cache=True)):
        return too_deep_problem()
    return None


def install(app: Flask) -> None:
    """Refuse JSON nested too deeply on every route of `app` (the webhook blueprint checks its own)."""

    @app.before_request
    def _json_depth():
        if request.blueprint == "webhooks":
            return None
        return refuse_deep_json()
