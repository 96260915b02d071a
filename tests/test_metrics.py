"""Issue 12, item 2: Prometheus metrics. The counters move with a booking (the API's requests and
booking outcomes, then the pipeline's steps, Stripe calls and the confirmation email, run here);
the state gauges are read at scrape time; `/metrics` answers loopback or the bearer token only;
under gunicorn one scrape counts every worker's requests; the consumer serves its own."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from models.db import get_engine
from models.enrollment import Enrollment
from tests.support.api import assert_problem, booking_body, make_app
from tests.support.booking import add_card, provisional_booking
from tests.support.consumer import Consumer, consumer_env, redis_queue, wait_for
from tests.support.live import Gunicorn, server_env
from tests.support.processes import free_port

OUTSIDE = {"REMOTE_ADDR": "203.0.113.5"}
TOKEN = "metrics-token-0123456789abcdef"


def _samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return _samples(response.get_data(as_text=True))


def test_a_booking_moves_the_counters(client, family_a, studio, stripe_env, task_queue, session):
    before = _scrape(client)
    student_id = family_a.add_student(client)
    add_card(stripe_env.client(), family_a.payee_id)
    body = booking_body(student_id, studio.slot_id, studio.plan_id)
    booked = client.post("/parent/bookings", json=body, headers=family_a.headers)
    assert booked.status_code == 202, booked.get_json()
    assert_problem(client.post("/parent/bookings", json=body, headers=family_a.headers), 409, "slot-taken")
    after_api = _scrape(client)

    def moved(samples, name, **labels):
        return _value(samples, name, **labels) - _value(before, name, **labels)

    assert moved(after_api, "studio_bookings_total", outcome="accepted") == 1
    assert moved(after_api, "studio_bookings_total", outcome="slot_taken") == 1
    route = {"route": "/parent/bookings", "method": "POST"}
    assert moved(after_api, "studio_http_requests_total", status="202", **route) == 1
    assert moved(after_api, "studio_http_requests_total", status="409", **route) == 1
    assert moved(after_api, "studio_http_request_duration_seconds_count", **route) == 2
    # Routes are URL rules, never raw paths.
    # (The counters are the process's: an app built with API_DOCS by another test added its docs pages.)
    rules = {rule.rule for rule in client.application.url_map.iter_rules()} | {"<unmatched>"}
    routes = {dict(labels)["route"] for name, labels in after_api if name == "studio_http_requests_total"}
    assert {route for route in routes if not route.startswith("/openapi/")} <= rules
    # The state, read at the scrape: the hold, and its task waiting in the queue.
    assert _value(after_api, "studio_state_up") == 1
    assert _value(after_api, "studio_holds_open", status="provisional") == 1
    assert _value(after_api, "studio_queue_depth") == 1 and _value(after_api, "studio_dead_letters_open") == 0

    task_queue.run_all()  # the pipeline, then the confirmation email, in this process
    session.expire_all()
    assert session.get(Enrollment, booked.get_json()["id"]).status == "active"
    done = _scrape(client)
    assert moved(done, "studio_pipeline_results_total", result="active") == 1
    for step in ("load", "customer", "payment_method", "subscription", "activate"):
        assert moved(done, "studio_pipeline_step_duration_seconds_count", step=step) == 1, step
    assert moved(done, "studio_stripe_requests_total", operation="subscription.create", outcome="ok") == 1
    assert moved(done, "studio_stripe_request_duration_seconds_count", operation="subscription.create") == 1
    assert moved(done, "studio_emails_total", template="booking_confirmation", outcome="sent") == 1
    assert _value(done, "studio_holds_open", status="provisional") == 0 and _value(done, "studio_queue_depth") == 0


def test_a_failed_step_is_counted_and_logged(client, session, stripe_env, task_queue, caplog):
    """Stripe answers 500 to the subscription: the step's failure, the call's outcome, a warning line."""
    from workers.tasks import book_enrollment

    before = _scrape(client)
    enrollment, payee, _, _ = provisional_booking(session)
    add_card(stripe_env.client(), payee.id)
    stripe_env.fault("/v1/subscriptions", fail_times=1, status=500)
    book_enrollment(enrollment.id)
    with caplog.at_level("INFO"):
        task_queue.run_all()  # the attempt fails; Huey schedules the retry
    after = _scrape(client)
    failures = {"step": "subscription", "error": "TransientStripeError"}
    assert (
        _value(after, "studio_pipeline_step_failures_total", **failures)
        - _value(before, "studio_pipeline_step_failures_total", **failures)
        == 1
    )
    transient = {"operation": "subscription.create", "outcome": "transient"}
    assert (
        _value(after, "studio_stripe_requests_total", **transient) - _value(before, "studio_stripe_requests_total", **transient)
        == 1
    )
    [call] = [r.fields for r in caplog.records if r.getMessage() == "stripe.request" and r.fields["outcome"] == "transient"]
    assert call["status"] == 500 and call["method"] == "POST" and call["path"] == "/v1/subscriptions"
    [step] = [r for r in caplog.records if r.getMessage() == "booking.step" and r.fields["outcome"] == "failed"]
    assert step.levelname == "WARNING" and step.fields["step"] == "subscription"


def test_the_state_gauges_read_what_the_alerts_watch(client, session):
    """A hold past its expiry, an open dead letter, a Stripe event waiting ten minutes: what
    deploy/alerts.yml's holds-stuck, dead-letters and webhook rules read."""
    from models import billing, outbox
    from models.base import utcnow

    enrollment, _, _, _ = provisional_booking(session)
    enrollment.provisional_expires_at = utcnow() - timedelta(minutes=5)
    session.add(enrollment)
    outbox.add_dead_letter(session, kind="send_email", payload={"email_id": 1}, error="Mailjet said no")
    event = billing.record_stripe_event(session, event_id="evt_waiting", type="invoice.paid", payload={"created": 0})
    event.received_at = utcnow() - timedelta(minutes=10)
    session.add(event)
    session.commit()
    samples = _scrape(client)
    assert _value(samples, "studio_holds_past_expiry") == 1 and _value(samples, "studio_holds_open", status="provisional") == 1
    assert _value(samples, "studio_dead_letters_open") == 1 and _value(samples, "studio_webhook_events_waiting") == 1
    assert 600 <= _value(samples, "studio_webhook_oldest_waiting_seconds") < 700


def test_webhook_lag_is_measured_from_stripes_created(client, session, caplog):
    """Stripe's `created` to processed here: a histogram observation and the `webhook.event` line."""
    import time

    from models import billing
    from workers.webhook_events import process_event

    before = _scrape(client)
    event = billing.record_stripe_event(
        session, event_id="evt_late", type="test.unhandled", payload={"created": int(time.time()) - 90}
    )
    session.commit()
    with caplog.at_level("INFO", logger="workers.webhook_events"):
        assert process_event(event.id).status == "ignored"
    after = _scrape(client)
    assert _value(after, "studio_webhook_lag_seconds_count") - _value(before, "studio_webhook_lag_seconds_count") == 1
    assert 90 <= _value(after, "studio_webhook_lag_seconds_sum") - _value(before, "studio_webhook_lag_seconds_sum") < 150
    assert (
        _value(after, "studio_webhook_events_total", status="ignored")
        - _value(before, "studio_webhook_events_total", status="ignored")
        == 1
    )
    [line] = [record.fields for record in caplog.records if record.getMessage() == "webhook.event"]
    assert line["stripe_event_id"] == "evt_late" and line["type"] == "test.unhandled" and line["lag_seconds"] >= 90


def test_metrics_refused_from_another_address_without_the_token(db, monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    client = make_app().test_client()
    refused = client.get("/metrics", environ_base=OUTSIDE)
    assert assert_problem(refused, 403, "forbidden")["request_id"] == refused.headers["X-Request-ID"]
    assert "studio_" not in refused.get_data(as_text=True)
    assert (
        client.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code
        == 403
    )
    assert client.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403
    assert ("studio_state_up", ()) in _scrape(client, environ_base=OUTSIDE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert _scrape(client)  # loopback needs no token
    # A proxy on this host forwards every client from loopback: a forwarded request needs the token.
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403


def test_behind_a_trusted_proxy_the_socket_peer_decides(db, monkeypatch):
    """With TRUSTED_PROXIES the app reads the client's address from X-Forwarded-For; /metrics
    does not: a client claiming to be loopback is still refused."""
    monkeypatch.setenv("TRUSTED_PROXIES", "1")
    client = make_app().test_client()
    spoofed = client.get("/metrics", environ_base=OUTSIDE, headers={"X-Forwarded-For": "127.0.0.1"})
    assert_problem(spoofed, 403, "forbidden")


def test_without_a_token_set_only_loopback_scrapes(db):
    client = make_app().test_client()
    assert client.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": "Bearer "}).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:203.0.113.5"}).status_code == 403


@pytest.mark.slow
def test_gunicorn_workers_are_counted_in_one_scrape(committed_db, tmp_path):
    """Multi-process mode: each worker writes its counts to PROMETHEUS_MULTIPROC_DIR, and
    whichever worker answers the scrape adds up all of them."""
    folder = tmp_path / "prometheus"
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}

    def get(url: str) -> str:
        return urllib.request.urlopen(url, timeout=10).read().decode()

    with Gunicorn(server_env(PROMETHEUS_MULTIPROC_DIR=str(folder)), tmp_path / "gunicorn.log", workers=2, threads=1) as server:
        workers = wait_for(lambda: len(server.worker_pids()) == 2 and set(server.worker_pids()), what="two workers")
        before = _value(_samples(get(f"{server.url}/metrics")), "studio_http_requests_total", **healthz)
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while sent < 400 and not workers <= _counting_pids(folder):  # until both workers answered some
                list(pool.map(get, [f"{server.url}/healthz"] * 20))
                sent += 20
        scrapes = [_value(_samples(get(f"{server.url}/metrics")), "studio_http_requests_total", **healthz) for _ in range(6)]
    assert len(workers) == 2 and workers <= _counting_pids(folder)
    assert {count - before for count in scrapes} == {sent}  # whichever worker answered the scrape


def _counting_pids(folder: Path) -> set[int]:
    """The processes that wrote counters to the multi-process folder (`counter_<pid>.db`)."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("counter_*.db")}


@pytest.mark.redis
@pytest.mark.slow
def test_the_consumer_serves_its_metrics(engine_name, committed_db, redis_url, stripe_env, task_queue, tmp_path):
    with Session(get_engine(), expire_on_commit=False) as session:
        enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    add_card(stripe_env.client(), payee.id)
    port = free_port()
    env = consumer_env(
        db_url=committed_db,
        redis_url=redis_url,
        stripe_base=stripe_env.base_url,
        tmp_path=tmp_path,
        WORKER_METRICS_PORT=str(port),
        METRICS_TOKEN=TOKEN,
    )
    consumer = Consumer(env, tmp_path / "consumer.log").start()
    try:
        with redis_queue(task_queue, env):
            from workers.tasks import book_enrollment

            book_enrollment(enrollment.id)
            wait_for(lambda: _status(enrollment.id) == "active", timeout=60, what="active")
        scraped = _samples(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
    finally:
        consumer.stop()
    assert _value(scraped, "studio_pipeline_results_total", result="active") == 1
    assert _value(scraped, "studio_stripe_requests_total", operation="subscription.create", outcome="ok") == 1
    assert _value(scraped, "studio_state_up") == 1 and ("studio_queue_depth", ()) in scraped


def _status(enrollment_id: int) -> str:
    with Session(get_engine()) as session:
        return session.get(Enrollment, enrollment_id).status


def test_the_consumers_endpoint_refuses_another_address():
    from workers import metrics

    answers = []
    app = metrics.wsgi_app(TOKEN, queue=None)  # refused before the queue is read
    body = app({"PATH_INFO": "/metrics", "REMOTE_ADDR": "203.0.113.5"}, lambda status, headers: answers.append(status))
    assert answers == ["403 Forbidden"] and b'"status": 403' in b"".join(body)
    app({"PATH_INFO": "/metrics", "REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, lambda s, h: answers.append(s))
    assert answers[-1] == "403 Forbidden"
