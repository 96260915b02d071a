"""A real huey_consumer on Redis and PostgreSQL, against localstripe: the booking's whole way,
a consumer killed with -9 mid-pipeline, and Stripe unreachable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from models.db import get_engine
from models.enrollment import Enrollment
from models.outbox import DeadLetter, EmailLog
from tests.support.booking import add_card, provisional_booking
from tests.support.consumer import consumer_env, redis_queue, wait_for
from tests.support.processes import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _read(fn):
    with Session(get_engine()) as session:
        return fn(session)


def _enrollment(enrollment_id):
    return _read(lambda session: session.get(Enrollment, enrollment_id))


def _booking(engine_name):
    with Session(get_engine(), expire_on_commit=False) as session:
        enrollment, payee, plan, _ = provisional_booking(session, frequency="monthly")
        return enrollment.id, payee.id


def test_a_booking_goes_all_the_way_to_active_through_the_consumer(
    engine_name, committed_db, redis_url, stripe_env, task_queue, consumers, tmp_path
):
    enrollment_id, payee_id = _booking(engine_name)
    customer_id = add_card(stripe_env.client(), payee_id)
    env = consumer_env(db_url=committed_db, redis_url=redis_url, stripe_base=stripe_env.base_url, tmp_path=tmp_path)
    consumer = consumers(env)
    with redis_queue(task_queue, env):
        from workers.tasks import book_enrollment

        book_enrollment(enrollment_id)
        wait_for(lambda: _enrollment(enrollment_id).status == "active", what="active")
        confirmation = wait_for(
            lambda: _read(
                lambda s: s.exec(
                    select(EmailLog).where(EmailLog.template == "booking_confirmation", EmailLog.status == "sent")
                ).first()
            ),
            what="confirmation sent",
        )
    enrollment = _enrollment(enrollment_id)
    [subscription] = stripe_env.subscriptions(customer_id)
    assert subscription["id"] == enrollment.stripe_subscription_id and subscription["status"] == "active"
    assert confirmation.attempts == 1 and confirmation.provider_message_id.startswith("file:")
    assert list((tmp_path / "outbox").glob("*booking_confirmation.eml"))
    assert "Traceback" not in consumer.log()


def test_kill_9_mid_pipeline_then_restart_ends_active_with_one_subscription(
    engine_name, committed_db, redis_url, stripe_env, task_queue, consumers, tmp_path
):
    from workers.periodic import reconcile_bookings

    enrollment_id, payee_id = _booking(engine_name)
    customer_id = add_card(stripe_env.client(), payee_id)
    env = consumer_env(db_url=committed_db, redis_url=redis_url, stripe_base=stripe_env.base_url, tmp_path=tmp_path)
    # Stripe creates the subscription, then answers slowly: the consumer dies waiting for the answer.
    stripe_env.fault("/v1/subscriptions", method="POST", delay_after=5)
    consumer = consumers(env)
    with redis_queue(task_queue, env):
        from workers.tasks import book_enrollment

        book_enrollment(enrollment_id)
        wait_for(lambda: stripe_env.subscriptions(customer_id), what="the subscription in Stripe")
        consumer.kill_9()
        stripe_env.clear_faults()
        assert _enrollment(enrollment_id).status == "provisional"  # Stripe charged, we never heard
        assert task_queue.huey.pending_count() == 0  # Huey is at-most-once: the popped task is gone

        consumers(env)
        assert reconcile_bookings(stale_after=timedelta(0)) == {"requeued": [enrollment_id]}
        wait_for(lambda: _enrollment(enrollment_id).status == "active", what="active after restart")
    subscriptions = stripe_env.subscriptions(customer_id)
    assert len(subscriptions) == 1 and subscriptions[0]["status"] == "active"
    assert _enrollment(enrollment_id).stripe_subscription_id == subscriptions[0]["id"]


def test_stripe_unreachable_retries_then_fails_with_a_dead_letter(
    engine_name, committed_db, redis_url, stripe_env, task_queue, consumers, tmp_path
):
    enrollment_id, _ = _booking(engine_name)
    dead_stripe = f"http://127.0.0.1:{free_port()}"
    env = consumer_env(db_url=committed_db, redis_url=redis_url, stripe_base=dead_stripe, tmp_path=tmp_path)
    consumer = consumers(env)
    with redis_queue(task_queue, env) as huey:
        from workers.tasks import book_enrollment

        # The retry policy travels with the message: the producer's, shortened for the test.
        huey.enqueue(book_enrollment.s(enrollment_id, retries=2, retry_delay=0.2, retry_backoff=1))
        wait_for(lambda: _enrollment(enrollment_id).status == "failed", what="failed")
        alert = wait_for(
            lambda: _read(lambda s: s.exec(select(EmailLog).where(EmailLog.template == "admin_alert")).first()),
            what="admin alert",
        )
    enrollment = _enrollment(enrollment_id)
    assert "gave up after retries" in enrollment.failure_reason and "APIConnectionError" in enrollment.failure_reason
    [letter] = _read(lambda s: list(s.exec(select(DeadLetter)).all()))
    assert letter.kind == "book_enrollment" and letter.payload == {"enrollment_id": enrollment_id}
    assert f"Booking {enrollment_id} failed" in alert.context["alert_subject"]
    log = consumer.log()
    assert log.count("retries left") == 2  # two retries, then the final attempt
