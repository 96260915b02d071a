"""Fault: Stripe answers bursts of 429 and 500 while a real consumer books.

Six families book at once. Phase 1 (no card yet): the customer creations meet 429s and
customer reads 500s; the bookings wait for a card. The parents add cards; the reconcile job
resumes the bookings. Phase 2: subscription creations meet 500s, card listings 429s.
The failures are injected by the local Stripe before it acts (compat `fail_times`).

Must hold: every injected failure is one failed attempt retried later by Huey (counted in the
consumer log) after a delay, never at once (the consumer's scheduler ticks every second, so
the 0.3 s × 1.5ⁿ backoff shows as ≥ 0.25 s gaps), and nothing is duplicated: one customer per
family, one subscription per enrollment, one notice and one confirmation per booking.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import pytest
from sqlmodel import select

from models.config import reset_settings
from models.db import session_scope
from models.enrollment import Enrollment
from models.outbox import EmailLog
from tests import factories
from tests.faults.conftest import producer_retry_policy, read, stripe_list
from tests.support.booking import add_card, provisional_booking
from tests.support.consumer import consumer_env, redis_queue, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BOOKINGS = 6
PHASE_1 = [("/v1/customers", "POST", 4, 429), ("/v1/customers/", "GET", 3, 500)]
PHASE_2 = [("/v1/subscriptions", "POST", 4, 500), ("/v1/payment_methods", "GET", 3, 429)]


def _enrollments(ids) -> list[Enrollment]:
    return read(lambda s: [s.get(Enrollment, enrollment_id) for enrollment_id, _ in ids])


def _emails(template: str) -> list[EmailLog]:
    return read(lambda s: list(s.exec(select(EmailLog).where(EmailLog.template == template, EmailLog.status == "sent")).all()))


def _retry_gaps(log: str) -> list[float]:
    """Seconds between a failed attempt and the next attempt of the same task (consumer log)."""
    starts: dict[str, list[datetime]] = {}
    # The consumer's lines in the house format (models/logs.py): `<ISO time>Z INFO huey...: Executing ...`.
    for stamp, task_id in re.findall(r"^(\S+)Z INFO huey[\w.]*: Executing workers\.tasks\.book_enrollment: ([\w-]+)", log, re.M):
        starts.setdefault(task_id, []).append(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f"))
    return [
        (later - earlier).total_seconds() for times in starts.values() for earlier, later in zip(times, times[1:], strict=False)
    ]


def test_stripe_429_and_500_bursts_are_retried_without_duplicates(
    engine_name, committed_db, private_redis, private_stripe, task_queue, consumers, tmp_path, monkeypatch
):
    from workers.periodic import run_job
    from workers.tasks import book_enrollment

    producer_retry_policy(monkeypatch, retries=10, delay=0.3, backoff=1.5)
    monkeypatch.setenv("RECONCILE_STALE_SECONDS", "0")
    reset_settings()  # settings are read once; re-read after changing the environment
    env = consumer_env(
        db_url=committed_db,
        redis_url=private_redis.url,
        stripe_base=private_stripe.base_url,
        tmp_path=tmp_path,
        WORKER_TASK_RETRIES="10",
        WORKER_RETRY_DELAY="0.3",
        WORKER_RETRY_BACKOFF="1.5",
    )
    with session_scope() as session:
        ids = []
        for n in range(BOOKINGS):
            payee = factories.payee(session, email=f"burst{n}-{uuid.uuid4().hex[:6]}@family.test")
            enrollment, payee, _, _ = provisional_booking(session, frequency="monthly", payee=payee)
            ids.append((enrollment.id, payee.id))

    with redis_queue(task_queue, env):
        consumer = consumers(env)
        for fault in PHASE_1:
            private_stripe.fault(fault[0], method=fault[1], fail_times=fault[2], status=fault[3])
        for enrollment_id, _ in ids:
            book_enrollment(enrollment_id)
        wait_for(
            lambda: {row.pipeline_state for row in _enrollments(ids)} == {"awaiting_payment_method"},
            timeout=60,
            what="every booking waiting for a card",
        )
        private_stripe.clear_faults()
        for _, payee_id in ids:
            add_card(private_stripe.client(), payee_id)

        for fault in PHASE_2:
            private_stripe.fault(fault[0], method=fault[1], fail_times=fault[2], status=fault[3])
        run_job("reconcile_bookings")
        wait_for(lambda: {row.status for row in _enrollments(ids)} == {"active"}, timeout=60, what="every booking active")
        wait_for(lambda: len(_emails("booking_confirmation")) == BOOKINGS, what="confirmations sent")
        log = consumer.log()

    injected = sum(fault[2] for fault in PHASE_1 + PHASE_2)
    assert log.count("retries left") == injected, log[-4000:]  # each failure: one attempt, retried
    assert "RateLimitError" in log and "APIError" in log
    gaps = sorted(_retry_gaps(log))
    assert len(gaps) >= injected and gaps[0] >= 0.25  # never retried at once

    customers = stripe_list(private_stripe, "customers")
    assert len(customers) == BOOKINGS
    assert sorted(customer["metadata"]["payee_id"] for customer in customers) == sorted(str(payee_id) for _, payee_id in ids)
    subscriptions = stripe_list(private_stripe, "subscriptions", status="all")
    enrollments = _enrollments(ids)
    assert sorted(sub["metadata"]["enrollment_id"] for sub in subscriptions) == sorted(str(row.id) for row in enrollments)
    assert {sub["id"] for sub in subscriptions} == {row.stripe_subscription_id for row in enrollments}
    assert len(_emails("provisional_notice")) == BOOKINGS
    assert len(_emails("booking_confirmation")) == BOOKINGS
