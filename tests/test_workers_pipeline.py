"""The booking pipeline in-process against localstripe (+ compat layer), on both engines."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlmodel import select

from models.billing import Plan
from models.enrollment import Enrollment, lesson_dates
from models.outbox import DeadLetter, EmailLog
from models.people import Payee
from tests.support.booking import add_card, local_today, provisional_booking

pytestmark = pytest.mark.slow


def _reload(session, model, row_id):
    session.expire_all()
    return session.get(model, row_id)


def _emails(session, template=None):
    statement = select(EmailLog)
    if template:
        statement = statement.where(EmailLog.template == template)
    return list(session.exec(statement).all())


def test_monthly_booking_with_a_card_becomes_active_with_one_subscription(session, stripe_env, task_queue):
    from workers.tasks import book_enrollment

    enrollment, payee, plan, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    book_enrollment(enrollment.id)
    task_queue.run_all()
    book_enrollment(enrollment.id)  # a duplicate delivery of the task changes nothing
    task_queue.run_all()

    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.status == "active" and enrollment.pipeline_state == "done"
    subscriptions = stripe_env.subscriptions(customer_id)
    assert [sub["id"] for sub in subscriptions] == [enrollment.stripe_subscription_id]
    assert subscriptions[0]["status"] == "active"
    assert subscriptions[0]["metadata"] == {"enrollment_id": str(enrollment.id)}
    assert enrollment.stripe_invoice_id
    plan = _reload(session, Plan, plan.id)
    assert plan.stripe_price_id.startswith("price_") and plan.stripe_product_id.startswith("prod_")
    assert _reload(session, Payee, payee.id).stripe_customer_id == customer_id
    [confirmation] = _emails(session, "booking_confirmation")
    assert confirmation.status == "sent" and confirmation.recipient == payee.email and confirmation.attempts == 1


def test_without_a_card_the_parent_is_told_once_and_the_card_resumes_the_booking(session, stripe_env, task_queue):
    from workers.stripe_gateway import StripeGateway
    from workers.tasks import book_enrollment
    from workers.webhook_events import on_setup_intent_succeeded

    enrollment, payee, _, _ = provisional_booking(session, frequency="weekly", amount_cents=3500)
    for _ in range(2):
        book_enrollment(enrollment.id)
        task_queue.run_all()
    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.status == "provisional" and enrollment.pipeline_state == "awaiting_payment_method"
    [notice] = _emails(session, "provisional_notice")
    assert notice.status == "sent"

    client = stripe_env.client()
    from workers.payments import create_payment_setup

    setup = create_payment_setup(payee.id)
    intent = client.v1.setup_intents.confirm(setup["setup_intent_id"], {"payment_method": "pm_card_visa"})
    outcome = on_setup_intent_succeeded(StripeGateway(), {"id": intent.id})
    assert outcome.status == "processed" and outcome.resume == (enrollment.id,)  # the task enqueues it
    from workers.tasks import enqueue_follow_ups

    enqueue_follow_ups(outcome)
    assert task_queue.names() == ["book_enrollment"]
    task_queue.run_all()
    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.status == "active"
    assert len(stripe_env.subscriptions(setup["customer_id"])) == 1


def test_semester_plan_charges_the_remaining_billable_lessons_once(session, stripe_env, task_queue):
    from workers.tasks import book_enrollment

    enrollment, payee, plan, _ = provisional_booking(session, frequency="semester", amount_cents=3200, closures=2)
    expected_lessons = len(lesson_dates(session, enrollment, first=local_today()))
    assert expected_lessons == 8  # ten weeks minus two closures
    add_card(stripe_env.client(), payee.id)
    book_enrollment(enrollment.id)
    book_enrollment(enrollment.id)
    task_queue.run_all()
    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.status == "active" and enrollment.stripe_subscription_id is None
    intent = stripe_env.client().v1.payment_intents.retrieve(enrollment.stripe_payment_intent_id)
    assert intent.amount == 3200 * expected_lessons and intent.status == "succeeded"
    assert stripe_env.post_counts().get("/v1/payment_intents", 0) >= 1


def test_a_declined_card_fails_the_booking_with_a_dead_letter_and_an_admin_alert(session, stripe_env, task_queue):
    from workers.tasks import book_enrollment

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id, "pm_card_chargeCustomerFail")
    book_enrollment(enrollment.id)
    task_queue.run_all()
    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.status == "failed"
    assert "declined" in enrollment.failure_reason.lower()
    assert [sub["status"] for sub in stripe_env.subscriptions(customer_id) if sub["status"] != "canceled"] == []
    [letter] = session.exec(select(DeadLetter)).all()
    assert letter.kind == "book_enrollment" and letter.payload == {"enrollment_id": enrollment.id}
    [alert] = _emails(session, "admin_alert")
    assert alert.recipient == "admin@studio.test" and alert.status == "sent"
    assert _emails(session, "booking_confirmation") == []


def test_an_enrollment_no_longer_provisional_is_left_alone(session, stripe_env, task_queue):
    from models.enrollment import cancel_enrollment
    from workers.pipeline import run_booking

    enrollment, payee, _, _ = provisional_booking(session)
    cancel_enrollment(session, enrollment, reason="changed mind", actor="admin")
    session.commit()
    assert run_booking(enrollment.id) == "skipped"
    assert _reload(session, Payee, payee.id).stripe_customer_id is None


def test_a_rerun_after_the_semester_price_changed_does_not_charge_a_second_time(session, stripe_env, task_queue):
    """The worker charged, then died before recording it; meanwhile the admin closed a date, so
    the re-run prices the semester one lesson lower. The earlier charge must be found, not
    repeated under a new amount (and so a new idempotency key)."""
    from models.enrollment import touch_pipeline
    from models.terms import add_closure
    from workers.pipeline import run_booking
    from workers.pipeline_steps import stable_key
    from workers.stripe_gateway import StripeGateway

    enrollment, payee, plan, semester = provisional_booking(session, frequency="semester", amount_cents=3200)
    customer_id = add_card(stripe_env.client(), payee.id)
    lessons = lesson_dates(session, enrollment, first=local_today())
    gateway = StripeGateway()
    # What the killed run had done: its start recorded, then the charge sent with its key.
    touch_pipeline(session, _reload(session, Enrollment, enrollment.id), "charging")
    session.commit()
    first = gateway.charge_off_session(
        enrollment_id=enrollment.id,
        customer_id=customer_id,
        payment_method_id=gateway.default_payment_method(customer_id),
        amount_cents=3200 * len(lessons),
        currency="usd",
        key=stable_key("booking", enrollment.id, enrollment.created_at),
    )
    assert first["status"] == "succeeded"
    add_closure(session, semester=semester, closed_on=lessons[2], actor="admin")
    session.commit()
    posts = stripe_env.post_counts().get("/v1/payment_intents", 0)

    assert run_booking(enrollment.id) == "active"
    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.stripe_payment_intent_id == first["id"]
    assert stripe_env.post_counts().get("/v1/payment_intents", 0) == posts  # no second charge


def test_a_subscription_that_lands_after_the_hold_expired_is_cancelled_and_its_payment_refunded(
    committed_db, stripe_env, task_queue
):
    """The hold expires while Stripe is creating the subscription (its first invoice is paid at
    once): the pipeline cancels it and gives the first payment back, as it does for semesters."""
    from sqlmodel import Session

    from models.base import utcnow
    from models.db import get_engine, session_scope
    from models.enrollment import expire_provisional_holds
    from workers.pipeline import run_booking

    with Session(get_engine(), expire_on_commit=False) as setup:
        enrollment, payee, _, _ = provisional_booking(setup, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    stripe_env.fault("/v1/subscriptions", delay_after=1.5)  # created, answer late
    before = stripe_env.post_counts().get("/v1/subscriptions", 0)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(run_booking(enrollment.id)))
    worker.start()
    deadline = time.monotonic() + 10
    while stripe_env.post_counts().get("/v1/subscriptions", 0) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    with session_scope() as session:
        [expired] = expire_provisional_holds(session, now=utcnow() + timedelta(days=1))
        assert expired.id == enrollment.id
    worker.join(timeout=30)
    assert outcome == ["undone"]

    client = stripe_env.client()
    [subscription] = stripe_env.subscriptions(customer_id)
    assert subscription["status"] == "canceled"
    invoice = client.v1.invoices.retrieve(subscription["latest_invoice"])
    assert invoice.status == "paid" and invoice.payment_intent
    refunds = client.v1.refunds.list({"payment_intent": invoice.payment_intent}).data
    assert [refund.amount for refund in refunds] == [invoice.amount_paid]
