"""`POST /webhooks/stripe` and the event handlers: signatures, replays, shuffled order, dunning."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from sqlmodel import select

from models.base import utcnow
from models.billing import StripeEvent
from models.enrollment import Enrollment
from models.outbox import EmailLog
from tests.support import webhooks
from tests.support.booking import active_booking, fail_renewal
from tests.support.fixtures import WEBHOOK_SECRET

pytestmark = pytest.mark.slow


@pytest.fixture
def client():
    from webapi.webhooks import bp

    app = Flask("webhook-test")
    app.register_blueprint(bp)
    return app.test_client()


def _events(session):
    session.expire_all()
    return list(session.exec(select(StripeEvent)).all())


@pytest.mark.parametrize("signature", ["", "t=1,v1=deadbeef", "garbage"])
def test_a_bad_or_missing_signature_is_400_and_nothing_is_stored(session, stripe_env, client, task_queue, signature):
    response = webhooks.post(client, webhooks.event("invoice.paid", {"id": "in_x"}), WEBHOOK_SECRET, signature=signature)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json" and response.json["type"] == "bad-signature"
    assert _events(session) == [] and task_queue.pending() == []


def test_a_signature_with_another_secret_or_a_changed_body_is_refused(session, stripe_env, client, task_queue):
    payload = webhooks.event("invoice.paid", {"id": "in_x"})
    assert webhooks.post(client, payload, "whsec_other").status_code == 400
    import json

    body = json.dumps(payload).encode()
    signature = webhooks.sign(body, WEBHOOK_SECRET)
    tampered = body.replace(b"in_x", b"in_y")
    response = client.post("/webhooks/stripe", data=tampered, headers={"Stripe-Signature": signature})
    assert response.status_code == 400 and _events(session) == []


def test_a_replayed_event_is_stored_and_processed_once(session, stripe_env, client, task_queue):
    payload = webhooks.event("charge.refunded", {"id": "ch_1"})
    answers = [webhooks.post(client, payload, WEBHOOK_SECRET) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert [answer.json["duplicate"] for answer in answers] == [False, True, True]
    [stored] = _events(session)
    assert task_queue.pending() == [("process_stripe_event", (stored.id,))]
    task_queue.run_all()
    assert _events(session)[0].status == "ignored"  # a type we do not act on


def _pay_with_a_good_card(stripe_env, customer_id: str, invoice_id: str) -> None:
    client = stripe_env.client()
    good = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer_id})
    client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": good.id}})
    assert client.v1.invoices.pay(invoice_id).status == "paid"


def _snapshot_events(stripe_env, enrollment, failed_invoice_id):
    """Events as Stripe would send them, with object snapshots (possibly stale by now)."""
    client = stripe_env.client()
    first = client.v1.invoices.retrieve(enrollment.stripe_invoice_id).to_dict()
    failed = client.v1.invoices.retrieve(failed_invoice_id).to_dict()
    subscription = client.v1.subscriptions.retrieve(enrollment.stripe_subscription_id).to_dict()
    return [
        ("invoice.payment_succeeded", first),
        ("invoice.paid", first),
        ("invoice.payment_failed", failed),
        ("customer.subscription.updated", subscription),
        ("invoice.payment_failed", failed),
    ]


def _deliver_shuffled(session, client, task_queue, enrollment_id, events, seed, *, start_status):
    enrollment = session.get(Enrollment, enrollment_id)
    enrollment.status = start_status
    enrollment.past_due_since = utcnow() if start_status == "past_due" else None
    session.add(enrollment)
    session.commit()
    order = list(events)
    random.Random(seed).shuffle(order)
    for type_, obj in order:
        payload = webhooks.event(type_, obj)
        for _ in range(2):  # every event also arrives twice
            assert webhooks.post(client, payload, WEBHOOK_SECRET).status_code == 200
    task_queue.run_all()
    session.expire_all()
    return session.get(Enrollment, enrollment_id).status


def test_events_in_any_order_end_in_the_state_stripe_is_in(session, stripe_env, client, task_queue):
    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    failed_invoice = fail_renewal(stripe_env, customer_id, enrollment.stripe_subscription_id)
    events = _snapshot_events(stripe_env, enrollment, failed_invoice)
    for seed in range(4):  # Stripe says: past due, whatever the order
        assert _deliver_shuffled(session, client, task_queue, enrollment.id, events, seed, start_status="active") == "past_due"
    _pay_with_a_good_card(stripe_env, customer_id, failed_invoice)
    for seed in range(4):  # the same stale snapshots, now Stripe says: paid
        assert _deliver_shuffled(session, client, task_queue, enrollment.id, events, seed, start_status="past_due") == "active"
    assert {event.status for event in _events(session)} <= {"processed", "ignored"}


def test_new_shape_payloads_are_read_too(session, stripe_env, client, task_queue):
    """Real Stripe (2025-03-31.basil+) puts an invoice's subscription under `parent`."""
    from workers.stripe_shapes import invoice_subscription_id, subscription_period_end

    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    new_invoice = {
        "id": "in_new",
        "object": "invoice",
        "status": "open",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_new"}},
    }
    old_invoice = {"id": "in_old", "object": "invoice", "subscription": "sub_old"}
    assert invoice_subscription_id(new_invoice) == "sub_new" and invoice_subscription_id(old_invoice) == "sub_old"
    assert subscription_period_end({"items": {"data": [{"current_period_end": 200}, {"current_period_end": 100}]}}) == 100
    assert subscription_period_end({"current_period_end": 300, "items": {"data": [{}]}}) == 300
    failed_invoice = fail_renewal(stripe_env, customer_id, enrollment.stripe_subscription_id)
    # a new-shape snapshot: no top-level `subscription`
    payload = webhooks.event(
        "invoice.payment_failed",
        {
            "id": failed_invoice,
            "object": "invoice",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": enrollment.stripe_subscription_id},
            },
        },
    )
    assert webhooks.post(client, payload, WEBHOOK_SECRET).status_code == 200
    task_queue.run_all()
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "past_due"


def _past_due(session, stripe_env, client, task_queue):
    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    failed_invoice = fail_renewal(stripe_env, customer_id, enrollment.stripe_subscription_id)
    payload = webhooks.event("invoice.payment_failed", stripe_env.client().v1.invoices.retrieve(failed_invoice).to_dict())
    webhooks.post(client, payload, WEBHOOK_SECRET)
    task_queue.run_all()
    session.expire_all()
    enrollment = session.get(Enrollment, enrollment.id)
    assert enrollment.status == "past_due"
    templates = [row.template for row in session.exec(select(EmailLog).order_by(EmailLog.id)).all()]
    assert templates.count("payment_failed") == 1 and "admin_alert" in templates
    return enrollment, customer_id, failed_invoice


def test_dunning_paid_in_time_keeps_the_slot(session, stripe_env, client, task_queue):
    from workers.periodic import run_job

    enrollment, customer_id, failed_invoice = _past_due(session, stripe_env, client, task_queue)
    with time_machine.travel(utcnow() + timedelta(days=3), tick=True):
        assert run_job("enforce_dunning") == {"cancelled": [], "paid_in_time": []}
    _pay_with_a_good_card(stripe_env, customer_id, failed_invoice)
    payload = webhooks.event("invoice.paid", stripe_env.client().v1.invoices.retrieve(failed_invoice).to_dict())
    webhooks.post(client, payload, WEBHOOK_SECRET)
    task_queue.run_all()
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "active"
    with time_machine.travel(utcnow() + timedelta(days=8), tick=True):
        assert run_job("enforce_dunning") == {"cancelled": [], "paid_in_time": []}
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "active"
    assert stripe_env.client().v1.subscriptions.retrieve(enrollment.stripe_subscription_id).status == "active"


def test_dunning_not_paid_cancels_in_stripe_and_locally_and_tells_everyone(session, stripe_env, client, task_queue):
    from workers.periodic import run_job

    enrollment, customer_id, _ = _past_due(session, stripe_env, client, task_queue)
    with time_machine.travel(utcnow() + timedelta(days=6, hours=23), tick=True):
        assert run_job("enforce_dunning")["cancelled"] == []
    with time_machine.travel(utcnow() + timedelta(days=7, hours=1), tick=True):
        assert run_job("enforce_dunning") == {"cancelled": [enrollment.id], "paid_in_time": []}
        assert run_job("enforce_dunning") == {"cancelled": [], "paid_in_time": []}  # safe twice
    session.expire_all()
    enrollment = session.get(Enrollment, enrollment.id)
    assert enrollment.status == "cancelled" and enrollment.cancel_reason == "not paid within the grace period"
    assert stripe_env.client().v1.subscriptions.retrieve(enrollment.stripe_subscription_id).status == "canceled"
    final = session.exec(select(EmailLog).where(EmailLog.dedupe_key == f"dunning_cancelled:{enrollment.id}")).one()
    assert final.template == "payment_failed" and final.context["final_notice"] is True
    assert session.exec(
        select(EmailLog).where(EmailLog.dedupe_key == f"dunning_cancelled:{enrollment.id}:admin@studio.test")
    ).one()
