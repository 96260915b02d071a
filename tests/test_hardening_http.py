"""Issue 11, the HTTP surface: JSON depth (3), body sizes (14), caching and CORS headers (12)."""

from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from models.billing import StripeEvent
from models.outbox import DeadLetter
from tests.support import webhooks
from tests.support.api import assert_problem, make_app, register
from tests.support.fixtures import WEBHOOK_SECRET
from webapi.request_limits import MAX_JSON_DEPTH, json_depth_exceeds


def nested(depth: int) -> str:
    """A JSON array nested `depth` levels deep."""
    return "[" * depth + "]" * depth


@pytest.fixture
def webhook_secret(monkeypatch):
    from models.config import reset_settings

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    reset_settings()


def _events(session) -> list[StripeEvent]:
    session.expire_all()
    return list(session.exec(select(StripeEvent)).all())


def _post_signed(client, body: bytes):
    headers = {"Content-Type": "application/json", "Stripe-Signature": webhooks.sign(body, WEBHOOK_SECRET)}
    return client.post("/webhooks/stripe", data=body, headers=headers)


# 3. JSON nested too deeply ---------------------------------------------------------------


def test_item_03_the_scan_counts_brackets_outside_strings_only():
    assert not json_depth_exceeds(nested(MAX_JSON_DEPTH).encode())
    assert json_depth_exceeds(nested(MAX_JSON_DEPTH + 1).encode())
    assert json_depth_exceeds(('{"a":' * 65 + "1" + "}" * 65).encode())
    # Brackets inside strings (escaped quotes included) do not nest anything.
    inside = json.dumps({"name": '\\"' + "[{" * 500}).encode()
    assert not json_depth_exceeds(inside)
    # Many brackets side by side are not deep.
    assert not json_depth_exceeds(json.dumps([[1]] * 5000).encode())


@pytest.fixture
def signed_in(client):
    return register(client, "deep-user", "deep@family.test")


# /auth/* read no body, but the guard covers any JSON body sent to them too.
AUTH_ROUTES = [("POST", "/auth/exchange"), ("POST", "/auth/refresh")]


def _json_body_routes(app) -> list[tuple[str, str]]:
    """Every operation the OpenAPI document gives a request body (a new route is covered as it lands)."""
    return sorted(
        (method.upper(), path)
        for path, item in app.api_doc["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    )


def test_item_03_deep_json_is_400_on_every_json_route(app, client, signed_in):
    """~1,000 levels made get_json raise RecursionError: a 500. Refused before parsing now."""
    routes = _json_body_routes(app)
    assert ("POST", "/parent/bookings") in routes and ("PUT", "/parent/payee") in routes
    headers = {**signed_in.headers, "Content-Type": "application/json"}
    for method, path in AUTH_ROUTES + routes:
        url = re.sub(r"\{[a-z_]+\}", "1", path)
        response = client.open(url, method=method, data=nested(1000), headers=headers)
        assert response.status_code == 400, (method, path, response.status_code)
        assert_problem(response, 400, "json-too-deep")


def test_item_03_json_at_the_limit_still_reaches_validation(client, signed_in):
    brackets_in_a_string = {"name": "[{" * 50}  # text: nothing nests
    assert client.post("/parent/students", json=brackets_in_a_string, headers=signed_in.headers).status_code == 201
    at_the_limit = {"name": json.loads(nested(MAX_JSON_DEPTH - 1))}  # 64 levels with the outer object
    response = client.post("/parent/students", json=at_the_limit, headers=signed_in.headers)
    assert_problem(response, 422, "validation-error")  # parsed, then refused as a name


def test_item_03_a_deep_signed_webhook_is_400_and_stores_nothing(session, webhook_secret, client, task_queue):
    event = webhooks.event("invoice.paid", {"id": "in_deep"})
    body = json.dumps(event).replace('{"id": "in_deep"}', '{"id": "in_deep", "x": ' + nested(3000) + "}").encode()
    response = _post_signed(client, body)
    assert_problem(response, 400, "json-too-deep")
    assert _events(session) == [] and task_queue.pending() == []


@pytest.mark.parametrize("obj", ["in_string", ["in_list"], 42])
def test_item_03_a_webhook_whose_object_is_not_an_object_fails_once(session, webhook_secret, client, task_queue, obj):
    """A signed event whose `data.object` is not an object raised AttributeError in the task:
    retried five times. It is stored, marked failed at the first run, with a dead letter."""
    response = webhooks.post(client, webhooks.event("invoice.paid", obj), WEBHOOK_SECRET)
    assert response.status_code == 200
    [stored] = _events(session)
    assert task_queue.run_all() == 1
    [stored] = _events(session)
    assert stored.status == "failed" and "data.object" in (stored.error or "")
    assert task_queue.pending() == [] and task_queue.huey.scheduled() == []
    [letter] = session.exec(select(DeadLetter)).all()
    assert letter.kind == "process_stripe_event" and letter.payload == {"event_id": stored.id}


# 14. Body sizes ----------------------------------------------------------------------------


def test_item_14_a_webhook_of_nearly_1_mib_is_stored(session, webhook_secret, client, task_queue):
    """Stripe events can outgrow 64 KiB (an invoice with many lines): they were a 413."""
    lines = [{"id": f"il_{n}", "object": "line_item", "description": "x" * 200} for n in range(4000)]
    body = json.dumps(webhooks.event("invoice.paid", {"id": "in_big", "lines": {"data": lines}})).encode()
    assert 900 * 1024 < len(body) < 1024 * 1024
    response = _post_signed(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    [stored] = _events(session)
    assert len(stored.payload["data"]["object"]["lines"]["data"]) == 4000


def test_item_14_a_webhook_over_1_mib_is_413_problem(session, webhook_secret, client):
    body = json.dumps(webhooks.event("invoice.paid", {"id": "in_huge", "pad": "x" * (1024 * 1024)})).encode()
    assert_problem(_post_signed(client, body), 413)
    assert _events(session) == []


def test_item_14_other_routes_keep_the_64_kib_limit(client, signed_in):
    body = json.dumps({"name": "Ada", "notes": "x" * (65 * 1024)})
    response = client.post("/parent/students", data=body, headers={**signed_in.headers, "Content-Type": "application/json"})
    assert_problem(response, 413)
    assert make_app().config["MAX_CONTENT_LENGTH"] == 64 * 1024


# 12. Vary, Cache-Control, the docs pages -----------------------------------------------------

ALLOWED = "https://app.studio.test"  # CORS_ORIGINS of the test settings: one origin


def _vary(response) -> set[str]:
    return {name.strip().lower() for value in response.headers.getlist("Vary") for name in value.split(",")}


@pytest.mark.parametrize("origin", [ALLOWED, "https://elsewhere.test", None])
def test_item_12_answers_of_the_cors_paths_vary_by_origin(client, origin):
    """flask-cors adds `Vary: Origin` only when several origins are allowed: with one, a cache
    could hand the allowed origin's answer (with Access-Control-Allow-Origin) to anyone."""
    headers = {"Origin": origin} if origin else {}
    for path in ("/public/instruments", "/parent/payee", "/healthz", "/auth/exchange"):
        response = client.get(path, headers=headers) if not path.startswith("/auth") else client.post(path, headers=headers)
        assert "origin" in _vary(response), (path, dict(response.headers))
        allowed = response.headers.get("Access-Control-Allow-Origin")
        assert allowed == ALLOWED if origin == ALLOWED else allowed in (None, ALLOWED)  # one origin: sent to all
    preflight = client.options("/parent/students", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"})
    assert "origin" in _vary(preflight)


def test_item_12_only_the_cors_paths_vary(client):
    response = client.get("/openapi.json", headers={"Origin": ALLOWED})
    assert "origin" not in _vary(response) and "Access-Control-Allow-Origin" not in response.headers


def test_item_12_no_vary_without_cors(db, monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "")
    client = make_app().test_client()
    response = client.get("/public/instruments", headers={"Origin": ALLOWED})
    assert response.status_code == 200 and "origin" not in _vary(response)


def test_item_12_public_listings_may_be_cached_for_30_seconds(client, signed_in):
    for path in ("/public/instruments", "/public/teachers", "/public/timeslots?available=true"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "public, max-age=30", path
    refused = client.get("/public/timeslots?limit=0")
    assert refused.status_code == 422 and "Cache-Control" not in refused.headers  # an error is not kept
    assert client.get("/parent/payee", headers=signed_in.headers).headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/healthz").headers


def test_item_12_the_docs_pages_are_off_unless_api_docs(db, monkeypatch):
    client = make_app().test_client()
    assert_problem(client.get("/openapi/"), 404)
    assert_problem(client.get("/openapi/openapi.json"), 404)
    assert client.get("/openapi.json").status_code == 200  # the document is always served
    monkeypatch.setenv("API_DOCS", "true")
    client = make_app().test_client()
    assert client.get("/openapi/").status_code == 200
    assert client.get("/openapi/openapi.json").get_json() == client.get("/openapi.json").get_json()


# 13. The OpenAPI document says what the API does ---------------------------------------------


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_item_13_every_error_is_declared_problem_json(app):
    """flask-openapi3 declared errors `application/json` (and its own 422 model); they are
    all served `application/problem+json` as `Problem`."""
    spec = app.api_doc
    for label, operation in _operations(spec):
        responses = operation["responses"]
        errors = {status: response for status, response in responses.items() if int(status) >= 400}
        for status, response in errors.items():
            assert response["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}, (
                label,
                status,
            )
        assert {"414", "431", "500", "503"} <= set(errors), label
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(errors), label
    assert "ValidationErrorModel" not in spec["components"]["schemas"]
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "instance", "field", "errors"} <= set(problem)


def test_item_13_a_422_is_what_the_problem_schema_says(client, signed_in):
    from webapi.schemas import Problem

    body = assert_problem(client.post("/parent/students", json={"name": ""}, headers=signed_in.headers), 422)
    assert Problem.model_validate(body).errors[0].field == "name"


def test_item_13_the_cursor_is_documented_and_every_documented_value_is_taken(client, app, signed_in):
    """The cursor was opaque base64 in a 40-character string: a schema-valid `cursor` was a 422.
    It is the id the next page starts after, `^[0-9]{1,10}$`, and any such value pages."""
    [cursor] = [p for p in app.api_doc["paths"]["/public/instruments"]["get"]["parameters"] if p["name"] == "cursor"]
    pattern = next(branch for branch in cursor["schema"]["anyOf"] if branch.get("type") == "string")["pattern"]
    assert re.fullmatch(pattern, "0") and re.fullmatch(pattern, "9999999999") and not re.fullmatch(pattern, "aWQ6Mw")
    assert "id" in cursor["schema"]["description"]
    for path in ("/public/instruments", "/public/teachers", "/public/timeslots"):
        assert client.get(f"{path}?cursor=9999999999").get_json() == {"items": [], "next_cursor": None}
        assert client.get(f"{path}?cursor=0").status_code == 200
    for path in ("/parent/students", "/parent/bookings", "/parent/makeups"):
        assert client.get(f"{path}?cursor=9999999999", headers=signed_in.headers).status_code == 200
    body = assert_problem(client.get("/public/instruments?cursor=aWQ6Mw"), 422, "validation-error")
    assert body["errors"][0]["field"] == "cursor"


def test_item_13_patch_documents_which_fields_null_clears(app, client, signed_in):
    """`StudentUpdate.name` was documented nullable, yet `null` is refused: 422."""
    properties = app.api_doc["components"]["schemas"]["StudentUpdate"]["properties"]
    assert properties["name"]["type"] == "string" and "anyOf" not in properties["name"]
    assert {"type": "null"} in properties["notes"]["anyOf"] and {"type": "null"} in properties["birth_date"]["anyOf"]
    student_id = signed_in.add_student(client)
    url = f"/parent/students/{student_id}"
    assert_problem(client.patch(url, json={"name": None}, headers=signed_in.headers), 422, "validation-error")
    cleared = client.patch(url, json={"notes": None, "birth_date": None}, headers=signed_in.headers)
    assert cleared.status_code == 200 and cleared.get_json()["notes"] is None


def test_item_13_a_calendar_token_is_documented_as_the_capability_it_is(app, client):
    """An unknown calendar token is a 404 (no calendar at that address), not a 401: the feed is
    documented as bearer-or-nothing with its `token` parameter, not as a second credential."""
    operation = app.api_doc["paths"]["/parent/calendar.ics"]["get"]
    assert operation["security"] == [{"bearer": []}, {}]
    assert [parameter["name"] for parameter in operation["parameters"]] == ["token"]
    assert_problem(client.get("/parent/calendar.ics?token=not-a-token"), 404)
    assert_problem(client.get("/parent/calendar.ics"), 401)


def test_item_13_every_rate_limited_operation_declares_429(app, client, signed_in):
    """/auth/* and every parent write are rate limited; only POST /parent/bookings and /auth/*
    declared the 429 they can answer."""
    from webapi.rate_limits import WRITE_METHODS

    for label, operation in _operations(app.api_doc):
        method, path = label.split(" ", 1)
        limited = path.startswith("/auth/") or (path.startswith("/parent/") and method in WRITE_METHODS)
        assert ("429" in operation["responses"]) == limited, label
    client.application.config["RATELIMIT_PARENT_WRITES"] = "1/minute"
    student_id = signed_in.add_student(client)
    refused = client.patch(f"/parent/students/{student_id}", json={"notes": "x"}, headers=signed_in.headers)
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
