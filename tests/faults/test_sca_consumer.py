"""3-D Secure end to end on PostgreSQL: the parent API over HTTP, Stripe's webhooks from the
local Stripe server to that API, and a real Huey consumer on Redis doing the work.

The parent (this test) signs in, sets up a card (the bank's check at set-up), books; with the
card that asks every time the booking waits in `action_required`, `GET /parent/bookings/<id>`
hands out the client secret, and the parent's check (`_authenticate`, what Stripe.js does)
makes Stripe send the events that turn it `active`. When the window passes instead, the
booking expires and nothing is charged.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from models.db import session_scope
from tests import factories
from tests.faults.conftest import rows, scalar
from tests.support.api import bearer, make_app
from tests.support.booking import local_today
from tests.support.consumer import consumer_env, redis_queue, wait_for
from tests.support.fixtures import WEBHOOK_SECRET
from tests.support.live import call, threaded_server
from tests.support.stripe_server import register_webhook

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ONCE, ALWAYS = "4000002500003155", "4000002760003184"


def _studio(frequency: str) -> tuple[int, int]:
    """A teacher's slot tomorrow-weekday and a plan (a semester around it for semester plans)."""
    today = local_today()
    with session_scope() as session:
        if frequency == "semester":
            factories.semester(session, starts=today, ends=today + timedelta(days=69))
        slot = factories.timeslot(session, weekday=(today.weekday() + 1) % 7)
        plan = factories.plan(session, frequency=frequency)
        return slot.id, plan.id


def _post(stripe, path: str, data: dict) -> dict:
    return stripe._request("POST", path, data)


def _sign_up_and_set_up_card(url: str, stripe, number: str, sub: str) -> tuple[dict, int]:
    headers = bearer(sub, f"{sub}@family.test")
    assert call("PUT", f"{url}/parent/payee", {"name": "Sam Parent"}, headers).status == 200
    student = call("POST", f"{url}/parent/students", {"name": "Kit"}, headers).body["id"]
    setup = call("POST", f"{url}/parent/payment-setup", {}, headers)
    assert setup.status == 200, setup.body
    secret = setup.body["client_secret"]  # what the app hands to Stripe.js
    client = stripe.client()
    card = client.v1.payment_methods.create(
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}}
    )
    intent = client.v1.setup_intents.confirm(secret.split("_secret_")[0], {"payment_method": card.id})
    assert intent.status == "requires_action"
    _post(stripe, f"/v1/setup_intents/{intent.id}/_authenticate", {"client_secret": secret, "success": True})
    return headers, student


@pytest.fixture
def live_studio(engine_name, committed_db, private_redis, private_stripe, task_queue, consumers, tmp_path, monkeypatch):
    """API on loopback, local Stripe sending its events to it, a consumer; yields what tests need."""
    monkeypatch.setenv("ACTION_REQUIRED_HOURS", "0.002")  # 7.2 s: the window passes within the test
    env = consumer_env(
        db_url=committed_db,
        redis_url=private_redis.url,
        stripe_base=private_stripe.base_url,
        tmp_path=tmp_path,
        ACTION_REQUIRED_HOURS="0.002",
    )
    with redis_queue(task_queue, env), threaded_server(make_app()) as url:
        register_webhook(private_stripe.base_url, f"{url}/webhooks/stripe", WEBHOOK_SECRET)
        consumer = consumers(env)
        yield url, private_stripe, consumer


def _booking(url: str, headers: dict, booking_id: int) -> dict:
    answer = call("GET", f"{url}/parent/bookings/{booking_id}", headers=headers)
    assert answer.status == 200, answer.body
    return answer.body


def _card_then_booking(url: str, stripe, number: str, sub: str, frequency: str) -> tuple[dict, int]:
    """Sign up, set up a card (its set-up check passed), wait for Stripe's event to make it the
    default, book: the family's headers and the booking id."""
    slot_id, plan_id = _studio(frequency)
    headers, student = _sign_up_and_set_up_card(url, stripe, number, sub)
    wait_for(
        lambda: scalar("SELECT count(*) FROM stripe_event WHERE type = 'setup_intent.succeeded' AND status = 'processed'") == 1,
        what="the card made the default",
    )
    body = {"student_id": student, "timeslot_id": slot_id, "instrument": "piano", "plan": str(plan_id)}
    booked = call("POST", f"{url}/parent/bookings", body, headers)
    assert booked.status == 202, booked.body
    return headers, booked.body["id"]


def _once(url: str, headers: dict, booking_id: int, status: str) -> dict:
    """The booking as the parent sees it, once it has reached `status`."""
    return wait_for(
        lambda: (lambda body: body if body["status"] == status else None)(_booking(url, headers, booking_id)),
        timeout=40,
        what=status,
    )


def _sent(template: str) -> int:
    return scalar(f"SELECT count(*) FROM email_log WHERE template = '{template}' AND status = 'sent'")


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_card_authenticated_at_setup_books_straight_to_active(live_studio, frequency):
    url, stripe, consumer = live_studio
    headers, booking_id = _card_then_booking(url, stripe, ONCE, f"once-{frequency}", frequency)
    _once(url, headers, booking_id, "active")
    assert scalar("SELECT count(*) FROM email_log WHERE template = 'payment_action_required'") == 0
    assert "Traceback" not in consumer.log()


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_card_asking_every_time_waits_for_the_parent_then_activates(live_studio, frequency):
    url, stripe, consumer = live_studio
    headers, booking_id = _card_then_booking(url, stripe, ALWAYS, f"always-{frequency}", frequency)
    waiting = _once(url, headers, booking_id, "action_required")
    assert waiting["action"]["type"] == "authenticate_payment"
    secret = waiting["action"]["client_secret"]
    intent_id = secret.split("_secret_")[0]
    # Another family cannot see it.
    stranger = bearer("someone-else", "x@family.test")
    assert call("GET", f"{url}/parent/bookings/{booking_id}", headers=stranger).status in (403, 404)

    _post(stripe, f"/v1/payment_intents/{intent_id}/_authenticate", {"client_secret": secret, "success": True})
    assert _once(url, headers, booking_id, "active")["action"] is None
    wait_for(lambda: _sent("booking_confirmation") == 1, what="confirmation sent")
    assert scalar("SELECT count(*) FROM email_log WHERE template = 'payment_action_required'") == 1
    assert scalar("SELECT count(*) FROM dead_letter") == 0
    assert "Traceback" not in consumer.log()


def test_the_window_passing_expires_the_booking_and_nothing_is_charged(live_studio):
    from workers.periodic import expire_provisional_holds

    url, stripe, consumer = live_studio
    headers, booking_id = _card_then_booking(url, stripe, ALWAYS, "window", "monthly")
    waiting = _once(url, headers, booking_id, "action_required")
    deadline = time.time() + 15
    while expire_provisional_holds()["expired"] == [] and time.time() < deadline:
        time.sleep(0.5)
    assert _booking(url, headers, booking_id)["status"] == "expired"
    [(subscription_id, invoice_id)] = rows("SELECT stripe_subscription_id, stripe_invoice_id FROM enrollment")
    wait_for(
        lambda: stripe._request("GET", f"/v1/subscriptions/{subscription_id}")["status"] == "canceled",
        what="the subscription cancelled",
    )
    # Cancelling and voiding are two calls: the invoice is void once the second has answered.
    wait_for(lambda: stripe._request("GET", f"/v1/invoices/{invoice_id}")["status"] == "void", what="the invoice void")
    # The parent's check comes too late: nothing can be paid any more.
    secret = waiting["action"]["client_secret"]
    intent = stripe._request("GET", f"/v1/payment_intents/{secret.split('_secret_')[0]}")
    assert intent["status"] == "canceled"
    charges = stripe.client().v1.charges.list().data
    assert [charge for charge in charges if charge.status == "succeeded"] == []
    wait_for(lambda: _sent("hold_expired") == 1, what="the parent told")
    assert scalar("SELECT count(*) FROM email_log WHERE template = 'admin_alert' AND subject LIKE '%expired%'") >= 1
