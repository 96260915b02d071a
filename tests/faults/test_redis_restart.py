"""Fault: Redis dies and comes back empty while booking tasks are queued.

A private redis-server (never the shared one) holds the consumer's queue. Seven bookings:
five families with a card, two without one whose holds run out within seconds. Stripe holds
its subscription answers for a moment so the consumer is busy and tasks pile up in Redis;
then Redis is killed -9 (no persistence: the queue is gone) and stays down 2.5 s: one more
booking is made meanwhile (its enqueue fails after commit), the busy tasks finish (their
emails' enqueues fail), and Redis starts again, empty. The
consumer keeps running throughout; the periodic jobs run as the consumer's scheduler would.

Must hold: the consumer survives and reconnects; the reconciliation recovers every lost
booking: the families with a card end `active` with exactly one subscription each, the holds
without a card end `expired` once their time is up; nothing stays `provisional` past its
hold; every email queued is sent (none left `queued`).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from huey.exceptions import TaskLockedException
from sqlmodel import select

from models import booking
from models.base import utcnow
from models.config import reset_settings
from models.db import after_commit, session_scope
from models.enrollment import Enrollment
from models.outbox import EmailLog
from tests import factories
from tests.faults.conftest import producer_retry_policy, read, scalar, stripe_list
from tests.support.booking import add_card, local_today
from tests.support.consumer import consumer_env, redis_queue, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

HOLD_LEFT = timedelta(seconds=8)


def _hold(*, expires_in: timedelta | None = None, enqueue: bool = False) -> tuple[int, int]:
    """A provisional booking of a new family (as the API makes it; `enqueue`: task after commit)."""
    from workers.tasks import book_enrollment

    now = utcnow()
    if expires_in is not None:  # a hold made long enough ago that only `expires_in` is left
        now = now - timedelta(minutes=30) + expires_in
    with session_scope() as session:
        payee = factories.payee(session, email=f"redis-{uuid.uuid4().hex[:8]}@family.test")
        student = factories.student(session, payee_row=payee)
        slot = factories.timeslot(session, weekday=(local_today().weekday() + 1) % 7, start=f"{8 + next(_hours)}:00")
        plan = factories.plan(session)
        enrollment = booking.hold_slot(
            session,
            payee=payee,
            student_id=student.id,
            timeslot_id=slot.id,
            instrument="piano",
            plan=plan.id,
            actor=f"payee:{payee.id}",
            now=now,
        )
        enrollment_id = enrollment.id
        if enqueue:
            after_commit(session, lambda: book_enrollment(enrollment_id))
        return enrollment_id, payee.id


_hours = iter(range(14))


def _statuses(ids) -> dict[int, str]:
    return read(lambda s: {row.id: row.status for row in s.exec(select(Enrollment).where(Enrollment.id.in_(ids))).all()})


def _run_periodic_jobs() -> None:
    from workers.periodic import run_job

    for name in ("expire_provisional_holds", "reconcile_bookings", "retry_stuck_emails"):
        try:
            run_job(name)
        except TaskLockedException:  # the consumer's scheduler runs it right now
            pass


def test_redis_restarted_with_tasks_queued_loses_no_booking(
    engine_name, committed_db, private_redis, private_stripe, task_queue, consumers, tmp_path, monkeypatch
):
    from workers.tasks import book_enrollment

    monkeypatch.setenv("RECONCILE_STALE_SECONDS", "1")
    monkeypatch.setenv("EMAIL_STUCK_SECONDS", "1")
    reset_settings()  # settings are read once; re-read after changing the environment
    producer_retry_policy(monkeypatch, retries=8, delay=0.5)
    env = consumer_env(
        db_url=committed_db,
        redis_url=private_redis.url,
        stripe_base=private_stripe.base_url,
        tmp_path=tmp_path,
        WORKER_TASK_RETRIES="8",
        WORKER_RETRY_DELAY="0.5",
        WORKER_RETRY_BACKOFF="1",
    )
    with_card = [_hold() for _ in range(4)]
    for _, payee_id in with_card:
        add_card(private_stripe.client(), payee_id)
    without_card = [_hold(expires_in=HOLD_LEFT) for _ in range(2)]
    private_stripe.fault("/v1/subscriptions", method="POST", delay_after=2)

    with redis_queue(task_queue, env) as huey:
        consumer = consumers(env)
        for enrollment_id, _ in with_card + without_card:
            book_enrollment(enrollment_id)
        wait_for(lambda: private_stripe.post_counts().get("/v1/subscriptions", 0) >= 1, what="the consumer busy in Stripe")
        assert huey.pending_count() >= 1, "nothing left queued to lose"

        private_redis.kill_9()
        late_id, late_payee = _hold(enqueue=True)  # committed; its enqueue fails: Redis is down
        add_card(private_stripe.client(), late_payee)
        with_card.append((late_id, late_payee))
        time.sleep(2.5)  # down long enough for the busy tasks to finish (their emails' enqueues fail too)
        private_redis.start()
        assert huey.pending_count() == 0  # the queue is gone
        private_stripe.clear_faults()

        card_ids = [enrollment_id for enrollment_id, _ in with_card]
        hold_ids = [enrollment_id for enrollment_id, _ in without_card]
        deadline = time.monotonic() + 60
        while True:  # the periodic jobs, run as the scheduler runs them (only faster)
            _run_periodic_jobs()
            statuses = _statuses(card_ids + hold_ids)
            if {statuses[i] for i in card_ids} == {"active"} and {statuses[i] for i in hold_ids} == {"expired"}:
                break
            assert time.monotonic() < deadline, f"not recovered: {statuses}"
            time.sleep(0.5)
        wait_for(
            lambda: not read(lambda s: s.exec(select(EmailLog).where(EmailLog.status != "sent")).first()),
            timeout=30,
            interval=0.3,
            what="every email sent",
        )
        assert consumer.process.poll() is None, "the consumer died with Redis"
        assert "Error 111 connecting" in consumer.log()  # it did notice Redis going away, and carried on

    assert scalar("SELECT count(*) FROM enrollment WHERE status = 'provisional' AND provisional_expires_at < now()") == 0
    subscriptions = stripe_list(private_stripe, "subscriptions", status="all")
    assert sorted(int(sub["metadata"]["enrollment_id"]) for sub in subscriptions) == sorted(card_ids)
    emails = read(lambda s: list(s.exec(select(EmailLog)).all()))
    assert len([row for row in emails if row.template == "booking_confirmation"]) == len(card_ids)
    assert len([row for row in emails if row.template == "hold_expired"]) == len(hold_ids)
