"""Handlers on today's object shapes: the objects are re-read over HTTP from a stand-in that
answers as API `2026-10-28.endive` renders them (tests/support/stripe_today.py), not in
localstripe's 2017 shapes. Both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from models.base import utcnow
from models.enrollment import Enrollment
from models.outbox import EmailLog
from tests import factories
from tests.support import stripe_today
from tests.support.booking import provisional_booking

HOSTED = "https://invoice.stripe.com/i/acct_test/test_today"


@pytest.fixture
def today_stripe(monkeypatch):
    from models.config import reset_settings

    with stripe_today.TodayStripe() as server:
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_today")
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        reset_settings()
        yield server
        assert server.violations == []  # the same request contract as every other Stripe stand-in
    reset_settings()


def _active(session, subscription_id: str) -> Enrollment:
    student = factories.student(session)
    enrollment = Enrollment(
        student_id=student.id,
        timeslot_id=factories.timeslot(session).id,
        instrument_id=factories.instrument(session).id,
        plan_id=factories.plan(session).id,
        status="active",
        start_date=utcnow().date(),
        stripe_subscription_id=subscription_id,
    )
    session.add(enrollment)
    session.commit()
    return enrollment


def _emails(session, template):
    return list(session.exec(select(EmailLog).where(EmailLog.template == template)).all())


def _renewal(server, subscription_id="sub_today"):
    server.add(
        stripe_today.payment_intent(
            "pi_today", customer="cus_today", status="requires_action", client_secret="pi_today_secret_abc"
        )
    )
    server.add(
        stripe_today.invoice(
            "in_today",
            subscription=subscription_id,
            customer="cus_today",
            payment_intent="pi_today",
            client_secret="pi_today_secret_abc",
            hosted_invoice_url=HOSTED,
        )
    )


@pytest.mark.parametrize("event", ["invoice.payment_action_required", "invoice.payment_failed"])
def test_renewal_needing_authentication_read_in_todays_shape(session, today_stripe, event):
    from workers.stripe_gateway import API_VERSION, StripeGateway
    from workers.webhook_events import HANDLERS

    enrollment = _active(session, "sub_today")
    _renewal(today_stripe)
    HANDLERS[event](StripeGateway(), {"id": "in_today"})
    HANDLERS[event](StripeGateway(), {"id": "in_today"})  # delivered twice

    session.expire_all()
    past_due = session.get(Enrollment, enrollment.id)
    assert past_due.status == "past_due"
    assert past_due.action_client_secret == "pi_today_secret_abc" and past_due.action_url == HOSTED
    [email] = _emails(session, "payment_action_required")
    assert email.context["action_url"] == HOSTED
    assert _emails(session, "payment_failed") == []
    # The invoice was read twice: as sent, then with its payments (today's API lists them only when asked).
    paths = [path for _, path, _ in today_stripe.requests]
    assert "/v1/invoices/in_today" in paths and "/v1/payment_intents/pi_today" in paths
    assert {version for _, _, version in today_stripe.requests} == {API_VERSION}


def test_first_invoice_needing_authentication_uses_the_confirmation_secret_and_hosted_page(session, today_stripe):
    from workers.payment_authentication import subscription_outcome
    from workers.stripe_gateway import StripeGateway

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    _renewal(today_stripe, subscription_id="sub_first")
    subscription = stripe_today.subscription("sub_first", customer="cus_today", status="incomplete", enrollment_id=enrollment.id)
    subscription["latest_invoice"] = "in_today"

    outcome, invoice_id, intent_id = subscription_outcome(StripeGateway(), enrollment.id, subscription)

    assert (outcome, invoice_id, intent_id) == ("action_required", "in_today", "pi_today")
    session.expire_all()
    waiting = session.get(Enrollment, enrollment.id)
    assert waiting.status == "action_required" and waiting.stripe_subscription_id == "sub_first"
    assert waiting.action_client_secret == "pi_today_secret_abc" and waiting.action_url == HOSTED
    assert (
        utcnow() + timedelta(hours=21) < waiting.provisional_expires_at < utcnow() + timedelta(hours=23)
    )  # before Stripe gives up
    [email] = _emails(session, "payment_action_required")
    assert email.recipient == payee.email and email.context["action_url"] == HOSTED


def test_paused_collection_in_todays_shape_pauses_then_resumes(session, today_stripe):
    from workers.stripe_gateway import StripeGateway
    from workers.webhook_events import on_subscription_changed

    enrollment = _active(session, "sub_paused")
    today_stripe.add(
        stripe_today.subscription(
            "sub_paused",
            customer="cus_today",
            status="active",
            pause_collection={"behavior": "mark_uncollectible", "resumes_at": None},
        )
    )
    on_subscription_changed(StripeGateway(), {"id": "sub_paused"})
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "paused"

    today_stripe.add(stripe_today.subscription("sub_paused", customer="cus_today", status="active"))
    on_subscription_changed(StripeGateway(), {"id": "sub_paused"})
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "active"


def test_subscription_period_is_read_from_its_items_in_todays_shape():
    from workers.stripe_shapes import subscription_period_end

    shaped = stripe_today.subscription("sub_x", customer="cus_x", status="active")
    assert subscription_period_end(shaped) == shaped["items"]["data"][0]["current_period_end"]
    assert "current_period_end" not in shaped


def test_off_session_authentication_required_leaves_a_payment_waiting_for_the_parent():
    from workers.payment_authentication import awaiting_parent

    waiting = stripe_today.payment_intent(
        "pi_w",
        customer="cus_x",
        status="requires_payment_method",
        client_secret="s",
        last_payment_error={"code": "authentication_required", "type": "card_error"},
    )
    declined = stripe_today.payment_intent(
        "pi_d",
        customer="cus_x",
        status="requires_payment_method",
        client_secret="s",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    assert awaiting_parent(waiting) and not awaiting_parent(declined)
    assert awaiting_parent(stripe_today.payment_intent("pi_a", customer="cus_x", status="requires_action", client_secret="s"))
