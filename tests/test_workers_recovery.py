"""What makes the workers lose nothing and fix drift: `reconcile_stripe`, `retry_stuck_emails`,
the `cancel_subscription` task and the payment_intent.* handlers — against localstripe
(+ compat layer) and the local Mailjet server, on both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlmodel import select

from models.base import utcnow
from models.config import reset_settings
from models.enrollment import Enrollment, cancel_enrollment
from models.outbox import DeadLetter, EmailLog, queue_admin_alert
from tests.support import webhooks
from tests.support.booking import active_booking, add_card, fail_renewal, provisional_booking
from tests.support.fixtures import WEBHOOK_SECRET

pytestmark = pytest.mark.slow


def _reload(session, enrollment_id: int) -> Enrollment:
    session.expire_all()
    return session.get(Enrollment, enrollment_id)


def _templates(session, enrollment_id: int) -> list[str]:
    session.expire_all()
    rows = session.exec(select(EmailLog).where(EmailLog.dedupe_key.like(f"%:{enrollment_id}%")).order_by(EmailLog.id)).all()
    return [row.template for row in rows]


# reconcile_stripe ------------------------------------------------------------------------


def test_reconcile_stripe_fixes_drift_and_reports_it(session, stripe_env, task_queue):
    from workers.periodic import run_job

    cancelled, _ = active_booking(session, stripe_env, task_queue)
    overdue, overdue_customer = active_booking(session, stripe_env, task_queue)
    missing, _ = active_booking(session, stripe_env, task_queue)
    in_sync, _ = active_booking(session, stripe_env, task_queue)
    recovered, _ = active_booking(session, stripe_env, task_queue)
    task_queue.clear()

    # Drift made behind our back (webhooks lost, an admin in the Stripe dashboard...).
    stripe_env.client().v1.subscriptions.cancel(cancelled.stripe_subscription_id)
    fail_renewal(stripe_env, overdue_customer, overdue.stripe_subscription_id)
    missing.stripe_subscription_id = "sub_gone_from_stripe"
    recovered.status, recovered.past_due_since = "past_due", utcnow()  # locally past due, paid in Stripe
    session.add_all([missing, recovered])
    session.commit()

    report = run_job("reconcile_stripe")

    assert report["checked"] == 5
    assert sorted(report["drift"]) == sorted(
        [
            f"enrollment {cancelled.id}: cancelled (subscription canceled)",
            f"enrollment {overdue.id}: past_due (subscription past_due)",
            f"enrollment {missing.id}: subscription sub_gone_from_stripe does not exist in Stripe",
            f"enrollment {recovered.id}: active again (subscription active)",
        ]
    )
    assert _reload(session, cancelled.id).status == "cancelled"
    assert "canceled in Stripe" in _reload(session, cancelled.id).cancel_reason
    assert _reload(session, overdue.id).status == "past_due"
    assert "payment_failed" in _templates(session, overdue.id)  # the parent hears about it
    # A subscription Stripe does not know (wrong account, deleted test data) is reported, not
    # acted on: cancelling on a 404 would empty the studio after a key mix-up.
    assert _reload(session, missing.id).status == "active"
    assert _reload(session, in_sync.id).status == "active"
    assert _reload(session, recovered.id).status == "active"
    [report_alert] = session.exec(select(EmailLog).where(EmailLog.dedupe_key.like("reconcile_stripe:%"))).all()
    assert report_alert.recipient == "admin@studio.test"
    assert report_alert.context["alert_subject"] == "Stripe reconciliation: 4 difference(s)"
    assert "sub_gone_from_stripe" in report_alert.context["message"]
    assert session.exec(
        select(EmailLog).where(EmailLog.dedupe_key == f"subscription_ended:{cancelled.id}:admin@studio.test")
    ).one()

    again = run_job("reconcile_stripe")  # safe twice: only what is still wrong is reported
    assert again == {
        "checked": 4,
        "drift": [f"enrollment {missing.id}: subscription sub_gone_from_stripe does not exist in Stripe"],
    }
    assert _templates(session, overdue.id).count("payment_failed") == 1


def test_reconcile_stripe_with_nothing_billed_checks_nothing(session, stripe_env, task_queue):
    from workers.periodic import run_job

    provisional_booking(session)
    assert run_job("reconcile_stripe") == {"checked": 0, "drift": []}
    assert session.exec(select(EmailLog).where(EmailLog.template == "admin_alert")).all() == []


# retry_stuck_emails ----------------------------------------------------------------------


def _alert(session, key: str) -> int:
    [row] = queue_admin_alert(session, subject=f"alert {key}", message="m", dedupe_key=key)
    session.commit()
    return row.id


def _set_email(session, email_id: int, *, status: str, age: timedelta, attempts: int = 0) -> None:
    session.execute(
        sa.update(EmailLog).where(EmailLog.id == email_id).values(status=status, attempts=attempts, updated_at=utcnow() - age)
    )
    session.commit()


def test_retry_stuck_emails_sends_lost_and_abandoned_rows_once(session, mailjet, task_queue):
    from workers.periodic import run_job

    lost = _alert(session, "lost")  # queued, its dispatch never reached the queue
    abandoned = _alert(session, "abandoned")  # `sending`, its worker died mid-send long ago
    in_flight = _alert(session, "in-flight")  # `sending` right now by a live worker
    fresh = _alert(session, "fresh")  # queued a moment ago: its task is on the way
    task_queue.clear()  # the dispatches are lost (Huey is at-most-once)
    _set_email(session, lost, status="queued", age=timedelta(hours=1))
    _set_email(session, abandoned, status="sending", age=timedelta(hours=1), attempts=1)
    _set_email(session, in_flight, status="sending", age=timedelta(seconds=30), attempts=1)  # < EMAIL_SENDING_STALE_SECONDS

    assert run_job("retry_stuck_emails") == {"requeued": [lost, abandoned]}
    assert task_queue.pending() == [("send_email", (lost,)), ("send_email", (abandoned,))]
    assert run_job("retry_stuck_emails") == {"requeued": [lost, abandoned]}  # the job ran again before the worker
    task_queue.run_all()

    assert sorted(mailjet.sent_custom_ids()) == sorted([f"email-{lost}", f"email-{abandoned}"])  # once each
    session.expire_all()
    rows = {row.id: row for row in session.exec(select(EmailLog)).all()}
    assert (rows[lost].status, rows[lost].attempts) == ("sent", 1)
    assert (rows[abandoned].status, rows[abandoned].attempts) == ("sent", 2)
    assert (rows[in_flight].status, rows[fresh].status) == ("sending", "queued")
    assert run_job("retry_stuck_emails") == {"requeued": []}
    assert session.exec(select(DeadLetter)).all() == []


def test_retry_stuck_emails_respects_email_stuck_seconds(session, mailjet, task_queue, monkeypatch):
    from workers.periodic import run_job

    email_id = _alert(session, "recent")
    task_queue.clear()
    _set_email(session, email_id, status="queued", age=timedelta(seconds=30))
    assert run_job("retry_stuck_emails") == {"requeued": []}  # default: 120 s
    monkeypatch.setenv("EMAIL_STUCK_SECONDS", "10")
    reset_settings()  # settings are read once; re-read after changing the environment
    assert run_job("retry_stuck_emails") == {"requeued": [email_id]}
    task_queue.run_all()
    assert mailjet.sent_custom_ids() == [f"email-{email_id}"]


# cancel_subscription ---------------------------------------------------------------------


def test_cancel_subscription_cancels_in_stripe_once_and_is_idempotent(session, stripe_env, task_queue):
    from workers.tasks import cancel_subscription

    enrollment, _ = active_booking(session, stripe_env, task_queue)
    task_queue.clear()
    client = stripe_env.client()
    assert cancel_subscription(enrollment.id) is not None
    task_queue.run_all()  # still active locally: the task must not touch Stripe
    assert client.v1.subscriptions.retrieve(enrollment.stripe_subscription_id).status == "active"

    cancel_enrollment(session, _reload(session, enrollment.id), reason="moving away", actor="admin")
    session.commit()
    first, second = cancel_subscription(enrollment.id), cancel_subscription(enrollment.id)
    task_queue.run_all()
    assert (first.get(), second.get()) == ("cancelled", "cancelled")
    subscription = client.v1.subscriptions.retrieve(enrollment.stripe_subscription_id)
    assert subscription.status == "canceled"
    canceled_at = subscription.canceled_at
    third = cancel_subscription(enrollment.id)
    task_queue.run_all()
    assert third.get() == "cancelled"
    assert client.v1.subscriptions.retrieve(enrollment.stripe_subscription_id).canceled_at == canceled_at
    assert session.exec(select(DeadLetter)).all() == []
    assert _reload(session, enrollment.id).status == "cancelled"


def test_cancel_subscription_of_a_provisional_hold_without_subscription_is_a_no_op(session, task_queue):
    """No Stripe key configured: any Stripe call would fail the task with a dead letter."""
    from workers.tasks import cancel_subscription

    enrollment, _, _, _ = provisional_booking(session)
    cancel_enrollment(session, enrollment, reason="changed mind", actor="parent")
    session.commit()
    results = [cancel_subscription(enrollment.id), cancel_subscription(enrollment.id)]
    task_queue.run_all()
    assert [result.get() for result in results] == ["skipped", "skipped"]
    assert session.exec(select(DeadLetter)).all() == []
    assert session.exec(select(EmailLog).where(EmailLog.template == "admin_alert")).all() == []


def test_cancel_subscription_that_stripe_does_not_know_is_skipped(session, stripe_env, task_queue):
    from workers.tasks import cancel_subscription

    enrollment, _ = active_booking(session, stripe_env, task_queue)
    enrollment = cancel_enrollment(session, enrollment, reason="x", actor="admin")
    enrollment.stripe_subscription_id = "sub_never_existed"
    session.add(enrollment)
    session.commit()
    result = cancel_subscription(enrollment.id)
    task_queue.run_all()
    assert result.get() == "skipped"
    assert session.exec(select(DeadLetter)).all() == []


# payment_intent.succeeded / .payment_failed ------------------------------------------------


@pytest.fixture
def webhook_client():
    from webapi.webhooks import bp

    app = Flask("webhook-test")
    app.register_blueprint(bp)
    return app.test_client()


def _deliver(webhook_client, task_queue, type_: str, obj: dict) -> list[tuple[str, tuple]]:
    """POST a signed event, run its processing task; returns the tasks it enqueued."""
    response = webhooks.post(webhook_client, webhooks.event(type_, obj), WEBHOOK_SECRET)
    assert response.status_code == 200
    [(name, args)] = task_queue.pending()
    assert name == "process_stripe_event"
    task = task_queue.huey.dequeue()
    task_queue.huey.execute(task)
    return task_queue.pending()


def test_payment_intent_succeeded_resumes_a_booking_whose_worker_died_after_charging(
    session, stripe_env, task_queue, webhook_client
):
    from models.billing import StripeEvent
    from workers.pipeline_steps import stable_key
    from workers.stripe_gateway import StripeGateway

    enrollment, payee, plan, _ = provisional_booking(session, frequency="semester", amount_cents=3200)
    customer_id = add_card(stripe_env.client(), payee.id)
    task_queue.clear()
    gateway = StripeGateway()
    card = gateway.default_payment_method(customer_id)
    # What the pipeline sent to Stripe before its worker was killed (same amount, same key).
    from models.enrollment import lesson_dates
    from tests.support.booking import local_today

    lessons = len(lesson_dates(session, enrollment, first=local_today()))
    intent = gateway.charge_off_session(
        enrollment_id=enrollment.id,
        customer_id=customer_id,
        payment_method_id=card,
        amount_cents=3200 * lessons,
        currency="usd",
        key=stable_key("booking", enrollment.id, enrollment.created_at),
    )
    assert intent["status"] == "succeeded" and _reload(session, enrollment.id).status == "provisional"

    assert _deliver(webhook_client, task_queue, "payment_intent.succeeded", intent) == [("book_enrollment", (enrollment.id,))]
    task_queue.run_all()
    enrollment = _reload(session, enrollment.id)
    assert enrollment.status == "active"
    assert enrollment.stripe_payment_intent_id == intent["id"]  # the same charge: not a second one
    assert _templates(session, enrollment.id).count("booking_confirmation") == 1

    # The same event again (Stripe retries) or late: the booking is settled, nothing is queued.
    assert _deliver(webhook_client, task_queue, "payment_intent.succeeded", intent) == []
    assert {event.status for event in session.exec(select(StripeEvent)).all()} == {"processed", "ignored"}


def test_payment_intent_payment_failed_lets_the_pipeline_fail_the_booking(session, stripe_env, task_queue, webhook_client):
    enrollment, payee, _, _ = provisional_booking(session, frequency="semester", amount_cents=3200)
    customer_id = add_card(stripe_env.client(), payee.id, "pm_card_chargeCustomerFail")
    task_queue.clear()
    # The PaymentIntent the pipeline had opened (declined: it needs another payment method).
    intent = (
        stripe_env.client()
        .v1.payment_intents.create(
            {"amount": 3200, "currency": "usd", "customer": customer_id, "metadata": {"enrollment_id": str(enrollment.id)}}
        )
        .to_dict()
    )

    assert _deliver(webhook_client, task_queue, "payment_intent.payment_failed", intent) == [
        ("book_enrollment", (enrollment.id,))
    ]
    task_queue.run_all()
    enrollment = _reload(session, enrollment.id)
    assert enrollment.status == "failed" and "declined" in enrollment.failure_reason.lower()
    [letter] = session.exec(select(DeadLetter)).all()
    assert letter.kind == "book_enrollment" and letter.payload == {"enrollment_id": enrollment.id}
    assert "booking_confirmation" not in _templates(session, enrollment.id)

    # A duplicate of the event once the booking has failed: ignored, no booking task.
    assert _deliver(webhook_client, task_queue, "payment_intent.payment_failed", intent) == []
    assert _reload(session, enrollment.id).status == "failed"


def test_payment_intent_events_for_other_payments_are_ignored(session, stripe_env, task_queue, webhook_client):
    from models.billing import StripeEvent

    enrollment, _ = active_booking(session, stripe_env, task_queue, frequency="semester")
    task_queue.clear()
    foreign = stripe_env.client().v1.payment_intents.create({"amount": 500, "currency": "usd"}).to_dict()
    assert _deliver(webhook_client, task_queue, "payment_intent.succeeded", foreign) == []
    ours = stripe_env.client().v1.payment_intents.retrieve(enrollment.stripe_payment_intent_id).to_dict()
    assert _deliver(webhook_client, task_queue, "payment_intent.payment_failed", ours) == []  # already active
    assert [event.status for event in session.exec(select(StripeEvent)).all()] == ["ignored", "ignored"]
    assert _reload(session, enrollment.id).status == "active"


# A charge whose booking ended before the pipeline could record it ---------------------------


def test_a_subscription_left_by_a_killed_worker_is_undone_when_the_hold_expires(session, stripe_env, task_queue):
    """The worker created the subscription (first invoice paid), then died; the consumer stayed
    down past the hold. Expiring the hold must not leave Stripe billing a slot nobody holds."""
    from workers.periodic import run_job
    from workers.pipeline_steps import stable_key
    from workers.stripe_gateway import StripeGateway

    enrollment, payee, plan, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    gateway = StripeGateway()
    gateway.default_payment_method(customer_id)
    price_id = (
        stripe_env.client()
        .v1.prices.create(
            {
                "product": stripe_env.client().v1.products.create({"name": "monthly"}).id,
                "unit_amount": 12000,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        )
        .id
    )
    subscription = gateway.create_subscription(  # what the killed worker had sent
        enrollment_id=enrollment.id,
        customer_id=customer_id,
        price_id=price_id,
        key=stable_key("booking", enrollment.id, enrollment.created_at),
    )
    assert subscription["status"] == "active"
    enrollment = _reload(session, enrollment.id)
    enrollment.provisional_expires_at = utcnow() - timedelta(minutes=1)
    session.add(enrollment)
    session.commit()
    task_queue.clear()

    assert run_job("expire_provisional_holds") == {"expired": [enrollment.id]}
    task_queue.run_all()
    assert _reload(session, enrollment.id).status == "expired"
    [after] = stripe_env.subscriptions(customer_id)
    assert after["status"] == "canceled"
    client = stripe_env.client()
    invoice = client.v1.invoices.retrieve(after["latest_invoice"])
    assert [r.amount for r in client.v1.refunds.list({"payment_intent": invoice.payment_intent}).data] == [12000]
    session.expire_all()
    assert session.exec(select(EmailLog).where(EmailLog.dedupe_key.like(f"late_charge:{enrollment.id}:%"))).all()

    task_queue.clear()  # running the expiry again changes nothing
    assert run_job("expire_provisional_holds") == {"expired": []}
    assert task_queue.pending() == []


def test_switching_the_default_card_back_to_an_earlier_one_takes_effect(session, stripe_env):
    """Card A, then card B, then A again (the parent went back to the first card): setting a
    default is idempotent by nature, and a key per (customer, card) made Stripe replay the first
    answer to A's key instead of switching back."""
    from workers.stripe_gateway import StripeGateway

    _, payee, _, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    gateway = StripeGateway()
    first = gateway.default_payment_method(customer_id)
    second = (
        stripe_env.client()
        .v1.payment_methods.create(
            {"type": "card", "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}
        )
        .id
    )
    stripe_env.client().v1.payment_methods.attach(second, {"customer": customer_id})
    assert second != first
    gateway.set_default_payment_method(customer_id, second)
    assert gateway.default_payment_method(customer_id) == second
    gateway.set_default_payment_method(customer_id, first)
    assert gateway.default_payment_method(customer_id) == first


def test_a_stored_event_whose_processing_task_was_lost_is_processed_by_the_retry_job(
    session, stripe_env, task_queue, webhook_client
):
    """Stripe got its 200 (the event is stored), but the enqueue failed after the commit or the
    consumer died holding the task: Stripe will not resend it, so a periodic job must."""
    from models.billing import StripeEvent
    from workers.periodic import JOBS, run_job

    response = webhooks.post(
        webhook_client, webhooks.event("customer.created", {"id": "cus_lost", "object": "customer"}), WEBHOOK_SECRET
    )
    assert response.status_code == 200
    task_queue.clear()  # the task is gone
    [event] = session.exec(select(StripeEvent)).all()
    assert event.status == "received"
    assert run_job("retry_stuck_events") == {"requeued": []}  # too fresh: its task may still be on its way
    session.exec(sa.update(StripeEvent).values(received_at=utcnow() - timedelta(minutes=30)))
    session.commit()

    assert "retry_stuck_events" in JOBS
    assert run_job("retry_stuck_events") == {"requeued": [event.id]}
    assert task_queue.pending() == [("process_stripe_event", (event.id,))]
    task_queue.run_all()
    session.expire_all()
    assert session.get(StripeEvent, event.id).status == "ignored"
    assert run_job("retry_stuck_events") == {"requeued": []}


def test_an_idempotency_key_reused_with_other_parameters_is_terminal_and_a_key_in_use_is_transient(stripe_env):
    """Stripe's `idempotency_error` (same key, different request) never heals by retrying; a
    409 (the first request with that key is still running) does."""
    from workers.stripe_gateway import StripeGateway, TerminalStripeError, TransientStripeError

    gateway = StripeGateway()
    stripe_env.fault("/v1/customers", fail_times=1, status=400, type="idempotency_error")
    with pytest.raises(TerminalStripeError):
        gateway.create_customer(email="a@example.test", name="A", payee_id=1, key="payee-1-x")
    stripe_env.clear_faults()
    stripe_env.fault("/v1/customers", fail_times=1, status=409, type="invalid_request_error")
    with pytest.raises(TransientStripeError):
        gateway.create_customer(email="a@example.test", name="A", payee_id=1, key="payee-1-y")


def test_cancelling_a_hold_whose_worker_died_after_charging_cancels_and_refunds_the_charge(session, stripe_env, task_queue):
    """The admin cancels a provisional hold; the worker had created its subscription and died
    before recording it. The cancellation task must find it by its metadata."""
    from workers.pipeline_steps import stable_key
    from workers.stripe_gateway import StripeGateway
    from workers.tasks import cancel_subscription

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    gateway = StripeGateway()
    gateway.default_payment_method(customer_id)
    client = stripe_env.client()
    price_id = client.v1.prices.create(
        {
            "product": client.v1.products.create({"name": "m"}).id,
            "unit_amount": 12000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    ).id
    gateway.create_subscription(
        enrollment_id=enrollment.id,
        customer_id=customer_id,
        price_id=price_id,
        key=stable_key("booking", enrollment.id, enrollment.created_at),
    )
    cancel_enrollment(session, _reload(session, enrollment.id), reason="changed mind", actor="admin")
    session.commit()
    task_queue.clear()

    result = cancel_subscription(enrollment.id)
    task_queue.run_all()
    assert result.get() == "undone"
    [subscription] = stripe_env.subscriptions(customer_id)
    assert subscription["status"] == "canceled"
    invoice = client.v1.invoices.retrieve(subscription["latest_invoice"])
    assert [r.amount for r in client.v1.refunds.list({"payment_intent": invoice.payment_intent}).data] == [12000]
