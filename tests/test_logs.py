"""Issue 12, item 1: structured logs. One booking from `POST /parent/bookings` to `active` through a
real consumer, both logging JSON (the API in this process, the consumer in its own): the same
request id on the API's lines and on the consumer's task lines, the enrollment id on every step,
one line per Stripe call with method, path, status and duration; no secret or token anywhere.
Then the request id's rules, and its way through the queue without touching a task's arguments."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from contextlib import contextmanager

import pytest
from sqlmodel import Session, select

from models import logs
from models.db import get_engine
from models.enrollment import Enrollment
from models.outbox import EmailLog
from models.people import Payee
from tests import factories
from tests.support.api import assert_problem, booking_body, make_app
from tests.support.consumer import Consumer, consumer_env, redis_queue, wait_for
from tests.support.fixtures import STRIPE_KEY, WEBHOOK_SECRET
from tests.support.jwt_tokens import supabase_token
from tests.support.settings import JWT_SECRET, SUPABASE_SECRET

REQUEST_ID = "booking-req.42_x"
# Anything shaped like a credential: Stripe client secrets and keys, webhook secrets, JWTs.
SECRET_SHAPES = re.compile(r"_secret_|\bsk_(test|live)_|\bwhsec_|\beyJ[A-Za-z0-9_-]+\.")


@contextmanager
def captured_json_logs():
    """This process's log lines, formatted by the studio's JSON formatter, as the API writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _read(fn):
    with Session(get_engine()) as session:
        return fn(session)


@pytest.mark.redis
@pytest.mark.slow
def test_one_booking_logs_json_from_the_request_to_activation(
    engine_name, committed_db, redis_url, stripe_env, task_queue, tmp_path
):
    with Session(get_engine()) as session:
        teacher = factories.teacher(session)
        slot = factories.timeslot(session, teacher_row=teacher, weekday=0, start="16:00")
        plan = factories.plan(session)
        session.commit()
        slot_id, plan_id = slot.id, plan.id
    env = consumer_env(
        db_url=committed_db, redis_url=redis_url, stripe_base=stripe_env.base_url, tmp_path=tmp_path, LOG_FORMAT="json"
    )
    consumer = Consumer(env, tmp_path / "consumer.log").start()
    client = make_app().test_client()
    # The local Stripe lives for the whole session: a family email of this run alone, so the
    # customer is created here (payment setup looks a customer up by email first).
    email = f"ada-{uuid.uuid4().hex[:8]}@family.test"
    try:
        with captured_json_logs() as api_log, redis_queue(task_queue, env):
            signed_in = client.post("/auth/exchange", headers={"Authorization": f"Bearer {supabase_token('u-1', email)}"})
            token = signed_in.get_json()["access_token"]
            parent = {"Authorization": f"Bearer {token}"}
            assert client.put("/parent/payee", json={"name": "Ada Parent"}, headers=parent).status_code == 200
            student_id = client.post("/parent/students", json={"name": "Ada"}, headers=parent).get_json()["id"]
            client_secret = client.post("/parent/payment-setup", headers=parent).get_json()["client_secret"]
            stripe_env.client().v1.setup_intents.confirm(client_secret.split("_secret_")[0], {"payment_method": "pm_card_visa"})

            booked = client.post(
                "/parent/bookings",
                json=booking_body(student_id, slot_id, plan_id),
                headers={**parent, "X-Request-ID": REQUEST_ID},
            )
            assert booked.status_code == 202, booked.get_json()
            assert booked.headers["X-Request-ID"] == REQUEST_ID
            enrollment_id = booked.get_json()["id"]
            taken = client.post("/parent/bookings", json=booking_body(student_id, slot_id, plan_id), headers=parent)
            problem = assert_problem(taken, 409, "slot-taken")
            assert problem["request_id"] == taken.headers["X-Request-ID"] != REQUEST_ID  # a new id, in both places

            wait_for(lambda: _read(lambda s: s.get(Enrollment, enrollment_id).status) == "active", timeout=60, what="active")
            wait_for(
                lambda: _read(
                    lambda s: s.exec(
                        select(EmailLog).where(EmailLog.template == "booking_confirmation", EmailLog.status == "sent")
                    ).first()
                ),
                timeout=60,
                what="the confirmation sent",
            )
    finally:
        consumer.stop()
    calendar_token = _read(lambda s: s.exec(select(Payee)).one().calendar_token)
    api_text, consumer_text = api_log.getvalue(), consumer.log()
    api_lines, worker_lines = _json_lines(api_text), _json_lines(consumer_text)

    # The API: one line per request, the booking's with the client's id, route and status.
    [request_line] = [line for line in api_lines if line["message"] == "http.request" and line.get("request_id") == REQUEST_ID]
    assert request_line["method"] == "POST" and request_line["route"] == "/parent/bookings"
    assert request_line["status"] == 202 and request_line["duration_ms"] >= 0 and request_line["level"] == "info"
    setup_calls = [line for line in api_lines if line["message"] == "stripe.request"]
    assert {line["operation"] for line in setup_calls} >= {"customer.create", "setup_intent.create"}
    assert all(line["request_id"] for line in setup_calls)  # made inside a request: its id

    # The consumer: its task lines carry the booking request's id; each step the enrollment's.
    booking_lines = [line for line in worker_lines if line.get("task") == "book_enrollment"]
    assert booking_lines and {line["request_id"] for line in booking_lines} == {REQUEST_ID}
    steps = [line for line in booking_lines if line["message"] == "booking.step"]
    assert [line["step"] for line in steps] == ["load", "customer", "payment_method", "subscription", "activate"]
    assert all(line["enrollment_id"] == enrollment_id and line["outcome"] == "ok" for line in steps)
    [result] = [line for line in booking_lines if line["message"] == "booking.result"]
    assert result["result"] == "active" and result["enrollment_id"] == enrollment_id

    # Stripe calls: method, path (no query string), status, duration, the idempotency key of a write.
    stripe_calls = [line for line in booking_lines if line["message"] == "stripe.request"]
    assert stripe_calls and all(line["enrollment_id"] == enrollment_id for line in stripe_calls)
    for line in stripe_calls:
        assert line["method"] in ("GET", "POST") and line["path"].startswith("/v1/") and "?" not in line["path"]
        assert line["status"] == 200 and line["outcome"] == "ok" and isinstance(line["duration_ms"], float)
    [subscribe] = [line for line in stripe_calls if line["operation"] == "subscription.create"]
    assert subscribe["method"] == "POST" and subscribe["path"] == "/v1/subscriptions"
    assert subscribe["idempotency_key"].startswith(f"booking-{enrollment_id}-") and subscribe["idempotency_key"].endswith(
        "-subscription"
    )

    # The confirmation, sent by a task the booking's task enqueued: still the same request id.
    [sent] = [line for line in worker_lines if line["message"] == "email.send"]
    assert sent["template"] == "booking_confirmation" and sent["outcome"] == "sent" and sent["request_id"] == REQUEST_ID
    assert isinstance(sent["email_id"], int) and "recipient" not in sent

    # No secret or token, in either process's log.
    secrets = [client_secret, token, JWT_SECRET, SUPABASE_SECRET, STRIPE_KEY, WEBHOOK_SECRET, calendar_token]
    for text in (api_text, consumer_text):
        assert not SECRET_SHAPES.search(text), SECRET_SHAPES.search(text).group(0)
        assert not [secret for secret in secrets if secret in text]
    assert "Traceback" not in consumer_text


def test_a_request_id_is_kept_only_when_sane(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-DEF_1.2"}).headers["X-Request-ID"] == "abc-DEF_1.2"
    for offered in ("x" * 65, "has space", "semi;colon", "ünï", ""):
        answered = client.get("/healthz", headers={"X-Request-ID": offered}).headers["X-Request-ID"]
        assert answered != offered and re.fullmatch(r"[0-9a-f]{32}", answered)
    missing = client.get("/no/such/route", headers={"X-Request-ID": "lost-1"})
    assert assert_problem(missing, 404)["request_id"] == "lost-1" == missing.headers["X-Request-ID"]


def test_a_task_carries_the_request_id_outside_its_arguments(task_queue, db):
    """Enqueued inside a request's context, the task's message carries the id; run, the task
    logs under it and its function gets only its own argument."""
    from workers.app import REQUEST_ID_ARG
    from workers.tasks import send_email

    with logs.context(request_id="req-7"):
        send_email(123)
    [task] = task_queue.huey.pending()
    assert task.kwargs == {REQUEST_ID_ARG: "req-7"} and task.args == (123,)
    with captured_json_logs() as stream:
        task_queue.run_all()  # no such email: `skipped`, logged by Huey inside the task's context
    lines = _json_lines(stream.getvalue())
    finished = [line for line in lines if line["logger"] == "huey" and "executed in" in line["message"]]
    assert finished and finished[0]["request_id"] == "req-7" and finished[0]["task"] == "send_email"
    assert logs.current() == {}


def test_text_and_json_lines_scrub_what_looks_like_a_secret():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "Stripe said %s", ("pi_1_secret_abc and sk_live_k",), None)
    record.fields = {"url": "/parent/calendar.ics?token=tok-123", "auth": "Bearer abc.def"}
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        line = formatter.format(record)
        assert "secret_abc" not in line and "sk_live_k" not in line and "tok-123" not in line and "abc.def" not in line
        assert line.count("[redacted]") == 4
    assert json.loads(logs.JsonFormatter().format(record))["level"] == "warning"
