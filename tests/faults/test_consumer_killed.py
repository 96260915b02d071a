"""Fault: the Huey consumer is killed with -9 at each step of the booking pipeline, then restarted.

Each run books two enrollments through a real consumer (Redis, PostgreSQL, a fresh
localstripe, the local Mailjet) and stops it dead at one step, made deterministic by the
local servers: Stripe performs the step's call, then holds its answer (compat `delay_after`)
until the consumer is killed — the worst moment, Stripe has acted and we never heard.
- `customer`: `POST /v1/customers` (the payee has no card yet; the parent adds one while the
  consumer is down, through the same idempotent customer creation)
- `payment_method`: `POST /v1/customers/<id>` making the card the default
- `subscription`: `POST /v1/subscriptions`
- `activation`: the enrollments are active, the confirmations not yet delivered (Mailjet
  answers 500 until the kill; the retries wait in Redis)
Then the consumer restarts and the periodic jobs run (`reconcile_bookings`, `retry_stuck_emails`).

Must hold: every enrollment ends `active`; Stripe holds exactly one customer per family and
one subscription per enrollment (the one the enrollment records); Mailjet accepted exactly
one confirmation per enrollment (counted by CustomID at the server).
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlmodel import select

from models.config import reset_settings
from models.db import session_scope
from models.enrollment import Enrollment
from models.outbox import EmailLog
from tests.faults.conftest import accepted_custom_ids, end_storm, mailjet_env, producer_retry_policy, read, storm, stripe_list
from tests.support.booking import add_card, provisional_booking
from tests.support.consumer import consumer_env, redis_queue, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BOOKINGS = 2
# step: (path prefix, method) of the Stripe call held until the kill; None: the Mailjet storm
STEPS = {
    "customer": ("/v1/customers", "POST"),
    "payment_method": ("/v1/customers/cus_", "POST"),
    "subscription": ("/v1/subscriptions", "POST"),
    "activation": None,
}


def _bookings() -> list[tuple[int, int]]:
    ids = []
    with session_scope() as session:
        for n in range(BOOKINGS):
            from tests import factories

            payee = factories.payee(session, email=f"kill{n}-{uuid.uuid4().hex[:6]}@family.test")
            enrollment, payee, _, _ = provisional_booking(session, frequency="monthly", payee=payee)
            ids.append((enrollment.id, payee.id))
    return ids


def _enrollments(ids) -> list[Enrollment]:
    return read(lambda s: [s.get(Enrollment, enrollment_id) for enrollment_id, _ in ids])


def _confirmations() -> list[EmailLog]:
    return read(lambda s: list(s.exec(select(EmailLog).where(EmailLog.template == "booking_confirmation")).all()))


def _held_calls(stripe, prefix: str) -> int:
    return sum(count for path, count in stripe.post_counts().items() if path.startswith(prefix))


@pytest.mark.parametrize("step", list(STEPS))
def test_kill_9_at_a_pipeline_step_then_restart_ends_active_once(
    step, engine_name, committed_db, private_redis, private_stripe, mailjet_stub, task_queue, consumers, tmp_path, monkeypatch
):
    from workers.periodic import run_job
    from workers.tasks import book_enrollment

    monkeypatch.setenv("RECONCILE_STALE_SECONDS", "0")
    monkeypatch.setenv("EMAIL_STUCK_SECONDS", "0")
    # A confirmation the killed consumer left `sending` is taken over after 1 s, not 120 s (its
    # lookup at Mailjet keeps it from being sent twice).
    monkeypatch.setenv("EMAIL_SENDING_STALE_SECONDS", "1")
    reset_settings()  # settings are read once; re-read after changing the environment
    producer_retry_policy(monkeypatch, retries=8, delay=0.5)
    env = consumer_env(
        db_url=committed_db,
        redis_url=private_redis.url,
        stripe_base=private_stripe.base_url,
        tmp_path=tmp_path,
        WORKER_TASK_RETRIES="8",
        WORKER_RETRY_DELAY="1",
        WORKER_RETRY_BACKOFF="1",
        **mailjet_env(mailjet_stub),
    )
    ids = _bookings()
    if step != "customer":
        for _, payee_id in ids:
            add_card(private_stripe.client(), payee_id)
    if STEPS[step]:
        prefix, method = STEPS[step]
        private_stripe.fault(prefix, method=method, delay_after=30)
    else:
        storm(mailjet_stub, [500] * 10_000)

    with redis_queue(task_queue, env) as huey:
        consumer = consumers(env)
        for enrollment_id, _ in ids:
            book_enrollment(enrollment_id)
        if STEPS[step]:
            wait_for(lambda: _held_calls(private_stripe, prefix) >= BOOKINGS, what=f"both bookings inside {step}")
        else:
            wait_for(
                lambda: (
                    len(_confirmations()) == BOOKINGS
                    and all(row.status == "queued" and row.attempts >= 1 for row in _confirmations())
                ),
                interval=0.02,
                what="both confirmations failed once and waiting to retry",
            )
        consumer.kill_9()
        private_stripe.clear_faults()
        failed_sends = end_storm(mailjet_stub) if not STEPS[step] else 0
        # Huey is at-most-once: the popped booking tasks died with the consumer.
        assert [task for task in huey.pending() if task.name == "book_enrollment"] == []
        if step == "customer":
            for _, payee_id in ids:  # the parent adds a card meanwhile (same idempotent customer)
                add_card(private_stripe.client(), payee_id)
        else:
            assert {row.status for row in _enrollments(ids)} == ({"active"} if step == "activation" else {"provisional"})

        consumers(env)
        run_job("reconcile_bookings")
        wait_for(lambda: {row.status for row in _enrollments(ids)} == {"active"}, what="every enrollment active")
        time.sleep(1.1)  # past EMAIL_SENDING_STALE_SECONDS
        run_job("retry_stuck_emails")
        wait_for(
            lambda: len(_confirmations()) == BOOKINGS and {row.status for row in _confirmations()} == {"sent"},
            what="every confirmation sent",
        )

    enrollments = _enrollments(ids)
    customers = stripe_list(private_stripe, "customers")
    assert len(customers) == BOOKINGS  # one per family, however often creation was tried
    subscriptions = stripe_list(private_stripe, "subscriptions", status="all")
    assert sorted(sub["metadata"]["enrollment_id"] for sub in subscriptions) == sorted(str(row.id) for row in enrollments)
    assert {sub["status"] for sub in subscriptions} == {"active"}
    assert {sub["id"] for sub in subscriptions} == {row.stripe_subscription_id for row in enrollments}
    assert all(row.pipeline_state == "done" for row in enrollments)
    confirmation_ids = sorted(f"email-{row.id}" for row in _confirmations())
    accepted = [custom_id for custom_id in accepted_custom_ids(mailjet_stub, failed_sends) if custom_id in confirmation_ids]
    assert sorted(accepted) == confirmation_ids  # each confirmation accepted by Mailjet exactly once
