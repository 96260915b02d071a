"""The OpenAPI document as the API behaves, finished in one place after flask-openapi3 built it.

flask-openapi3 declares every response `application/json` and adds its own 422 model; the
API answers every error as `application/problem+json` (`webapi.problems`). So, for every
operation:
- each 4xx/5xx response is the `Problem` schema under `application/problem+json`;
- the errors any request can meet are declared: 414 and 431 (gunicorn refuses a request
  line over 4,094 bytes or a header over 8,190 bytes, or more than 100 headers — the proxy of
  `deploy/nginx.conf` at 8 KiB — before the app sees it; `studioctl serve` makes those
  answers problem+json too), 500 and 503;
- operations with a JSON body also declare 400 (`json-too-deep`, `webapi.request_limits`)
  and 413 (a body over 64 KiB);
- the rate-limited ones (`webapi.rate_limits`: `/auth/*` and every write under `/parent/`)
  declare 429.
A calendar token is a capability URL: an unknown one is a 404 (no calendar lives there),
not a 401, so `GET /parent/calendar.ics` is documented as bearer-or-nothing with its
`token` query parameter, not as a second credential that 401s.
"""

from __future__ import annotations

from flask_openapi3 import OpenAPI

from webapi.problems import PROBLEM_JSON
from webapi.rate_limits import WRITE_METHODS

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
ANY_REQUEST = {
    "414": "URI Too Long: the request line is over 4,094 bytes (`uri-too-long`, answered before the app)",
    "431": "Request Header Fields Too Large: a header over 8,190 bytes or more than 100 headers (answered before the app)",
    "500": "Internal Server Error: logged on our side; the answer says nothing more",
    "503": "Service Unavailable: the database is unreachable or not migrated (`Retry-After`)",
}
WITH_BODY = {
    "400": "Bad Request: JSON nested deeper than 64 levels (`json-too-deep`)",
    "413": "Content Too Large: a body over 64 KiB",
}
RATE_LIMITED = "Too Many Requests: rate limited (`Retry-After` says when to try again)"
CAPABILITY_SCHEMES = ("calendarToken",)


def _problem(description: str) -> dict:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _rate_limited(path: str, method: str) -> bool:
    return path.startswith("/auth/") or (path.startswith("/parent/") and method.upper() in WRITE_METHODS)


def _finish_operation(path: str, method: str, operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        if int(status) >= 400:
            responses[status] = _problem(response.get("description") or status)
    added = {**ANY_REQUEST, **(WITH_BODY if "requestBody" in operation else {})}
    if _rate_limited(path, method):
        added["429"] = RATE_LIMITED
    for status, description in added.items():
        responses.setdefault(status, _problem(description))
    security = operation.get("security") or []
    if any(name in requirement for requirement in security for name in CAPABILITY_SCHEMES):
        kept = [requirement for requirement in security if not any(name in requirement for name in CAPABILITY_SCHEMES)]
        # The blueprint's requirement is merged with the route's: keep each once, then "or none".
        operation["security"] = [requirement for index, requirement in enumerate(kept) if requirement not in kept[:index]] + [{}]


def finish_spec(spec: dict) -> dict:
    """Rewrite flask-openapi3's document in place (and return it) to say what the API does."""
    for path, path_item in spec.get("paths", {}).items():
        for method, operation in path_item.items():
            _finish_operation(path, method, operation)
    # flask-openapi3's own 422 model, referenced by nothing now: every 422 here is a Problem.
    spec.get("components", {}).get("schemas", {}).pop("ValidationErrorModel", None)
    return spec


class StudioOpenAPI(OpenAPI):
    """flask-openapi3's app whose generated document is finished by `finish_spec`."""

    def generate_spec_json(self):
        super().generate_spec_json()
        finish_spec(self.spec_json)
