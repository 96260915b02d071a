"""Fault: a webhook flood. 1,000 signed Stripe events — 300 distinct ones, each delivered one
to several times, shuffled — are POSTed by 8 threads over real HTTP to the API while a real
consumer processes them from Redis.

Nine active bookings are first put in three Stripe states: three with a failed renewal
(`past_due`), three cancelled in Stripe, three untouched. Their events carry stale snapshots
(taken before the changes); the rest are types we do not act on.

Must hold: every delivery gets 200; each distinct event is stored once (the duplicates
answer `duplicate: true`) and processed exactly once (one task execution each in the
consumer log, none retried); every event ends processed or ignored; each enrollment ends in
the state Stripe is in, reached by exactly one transition (one audit row, one email).
"""

from __future__ import annotations

import json
import queue
import random
import threading
from collections import Counter

import pytest

from models.db import session_scope
from tests import factories
from tests.faults.conftest import producer_retry_policy, rows, scalar
from tests.support import webhooks
from tests.support.api import make_app
from tests.support.booking import add_card, fail_renewal, provisional_booking
from tests.support.consumer import consumer_env, redis_queue, wait_for
from tests.support.fixtures import WEBHOOK_SECRET
from tests.support.live import threaded_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

DELIVERIES = 1000
DISTINCT = 300
POSTERS = 8


def _active_bookings(stripe, task_queue, count: int) -> list[dict]:
    """`count` bookings made active through the pipeline (in this process)."""
    from workers.tasks import book_enrollment

    made = []
    for n in range(count):
        with session_scope() as session:
            payee = factories.payee(session, email=f"flood{n}@family.test")
            enrollment, payee, _, _ = provisional_booking(session, frequency="monthly", payee=payee)
            enrollment_id, payee_id = enrollment.id, payee.id
        customer_id = add_card(stripe.client(), payee_id)
        book_enrollment(enrollment_id)
        task_queue.run_all()
        [(status, subscription_id, invoice_id)] = rows(
            "SELECT status, stripe_subscription_id, stripe_invoice_id FROM enrollment WHERE id = :id", id=enrollment_id
        )
        assert status == "active"
        made.append({"id": enrollment_id, "customer": customer_id, "subscription": subscription_id, "invoice": invoice_id})
    return made


def _events(stripe, bookings) -> tuple[list[dict], dict[int, str]]:
    """The distinct events (stale snapshots) and the state each enrollment must end in."""
    client = stripe.client()
    events, expected = [], {}
    for n, booking in enumerate(bookings):
        invoice = client.v1.invoices.retrieve(booking["invoice"]).to_dict()
        subscription = client.v1.subscriptions.retrieve(booking["subscription"]).to_dict()  # still active
        events += [
            webhooks.event(kind, obj)
            for kind, obj in (
                ("invoice.payment_succeeded", invoice),
                ("invoice.paid", invoice),
                ("customer.subscription.created", subscription),
                ("customer.subscription.updated", subscription),
            )
        ]
        if n % 3 == 0:
            failed = client.v1.invoices.retrieve(fail_renewal(stripe, booking["customer"], booking["subscription"])).to_dict()
            events += [webhooks.event("invoice.payment_failed", failed), webhooks.event("invoice.created", failed)]
            expected[booking["id"]] = "past_due"
        elif n % 3 == 1:
            client.v1.subscriptions.cancel(booking["subscription"])
            events.append(webhooks.event("customer.subscription.deleted", subscription))
            expected[booking["id"]] = "cancelled"
        else:
            expected[booking["id"]] = "active"
    filler = ["charge.succeeded", "customer.updated", "payment_method.attached", "product.updated"]
    while len(events) < DISTINCT:
        events.append(webhooks.event(filler[len(events) % len(filler)], {"id": f"obj_{len(events)}"}))
    return events, expected


def _post_all(url: str, bodies: list[bytes]) -> list[tuple[int, dict]]:
    import urllib.request

    work: queue.Queue = queue.Queue()
    for body in bodies:
        work.put(body)
    answers, lock = [], threading.Lock()

    def poster():
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            request = urllib.request.Request(
                f"{url}/webhooks/stripe",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Stripe-Signature": webhooks.sign(body, WEBHOOK_SECRET)},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = (response.status, json.loads(response.read()))
            except urllib.error.HTTPError as error:
                answer = (error.code, {"raw": error.read().decode(errors="replace")})
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=poster, daemon=True) for _ in range(POSTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def test_a_flood_of_duplicated_shuffled_webhooks_is_processed_once_each(
    engine_name, committed_db, private_redis, private_stripe, task_queue, consumers, tmp_path, monkeypatch
):
    bookings = _active_bookings(private_stripe, task_queue, 9)
    events, expected = _events(private_stripe, bookings)
    rng = random.Random(7)
    deliveries = events + rng.choices(events, k=DELIVERIES - len(events))
    rng.shuffle(deliveries)
    bodies = [json.dumps(event).encode() for event in deliveries]
    producer_retry_policy(monkeypatch, retries=5, delay=0.5)
    env = consumer_env(db_url=committed_db, redis_url=private_redis.url, stripe_base=private_stripe.base_url, tmp_path=tmp_path)

    with redis_queue(task_queue, env), threaded_server(make_app()) as url:
        consumer = consumers(env)
        answers = _post_all(url, bodies)
        wait_for(
            lambda: scalar("SELECT count(*) FROM stripe_event WHERE status IN ('processed', 'ignored')") == DISTINCT,
            timeout=90,
            interval=0.3,
            what="every event processed",
        )
        log = consumer.log()

    assert len(answers) == DELIVERIES and Counter(status for status, _ in answers) == {200: DELIVERIES}, Counter(
        status for status, _ in answers
    )
    assert Counter(body["duplicate"] for _, body in answers) == {False: DISTINCT, True: DELIVERIES - DISTINCT}
    assert (
        scalar("SELECT count(DISTINCT stripe_event_id) FROM stripe_event")
        == scalar("SELECT count(*) FROM stripe_event")
        == DISTINCT
    )
    assert log.count("Executing workers.tasks.process_stripe_event") == DISTINCT  # once each
    assert "retries left" not in log
    relevant = {
        "invoice.payment_succeeded",
        "invoice.paid",
        "invoice.payment_failed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
    statuses = dict(rows("SELECT type, string_agg(DISTINCT status, ',') FROM stripe_event GROUP BY type"))
    assert all(statuses[kind] == "processed" for kind in relevant), statuses
    assert all(status == "ignored" for kind, status in statuses.items() if kind not in relevant), statuses

    final = dict(rows("SELECT id, status FROM enrollment"))
    assert final == expected
    actions = Counter(action for (action,) in rows("SELECT action FROM audit_log WHERE action LIKE 'enrollment.%'"))
    assert actions["enrollment.past_due"] == 3 and actions["enrollment.cancel"] == 3 and actions["enrollment.paid"] == 0
    assert scalar("SELECT count(*) FROM email_log WHERE template = 'payment_failed'") == 3
    assert scalar("SELECT count(*) FROM dead_letter") == 0
