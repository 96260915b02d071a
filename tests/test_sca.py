"""3-D Secure (SCA) on the booking path, in-process against localstripe + compat layer, both engines.

Card `4000002500003155` is authenticated once, at set-up; card `4000002760003184` needs the
parent on every charge. The parent's browser is played by the test: it confirms the
SetupIntent and, where the bank asks, calls the local server's `_authenticate` as Stripe.js
would after the 3-D Secure page. Events are processed by the same handlers the webhook task
runs. The end-to-end run through HTTP, webhooks and a real consumer is in
`tests/faults/test_sca_consumer.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from models.base import utcnow
from models.enrollment import Enrollment
from models.outbox import EmailLog
from tests.support.booking import provisional_booking

pytestmark = pytest.mark.slow

ONCE = "4000002500003155"  # authenticate at set-up, then off-session charges pass
ALWAYS = "4000002760003184"  # every charge needs the parent's check


def _reload(session, enrollment_id):
    session.expire_all()
    return session.get(Enrollment, enrollment_id)


def _emails(session, template):
    return list(session.exec(select(EmailLog).where(EmailLog.template == template)).all())


def _card(client, number: str) -> str:
    return client.v1.payment_methods.create(
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}}
    ).id


def _authenticate(stripe_env, kind: str, intent_id: str, client_secret: str, success: bool = True) -> dict:
    """What Stripe.js does after the bank's page: `kind` is payment_intents or setup_intents."""
    return stripe_env._request(
        "POST", f"/v1/{kind}/{intent_id}/_authenticate", {"client_secret": client_secret, "success": success}
    )


def set_up_card(stripe_env, payee_id: int, number: str, *, authenticate: bool = True) -> str:
    """Payment setup as the parent app does it; the bank's check at set-up passed (or not)."""
    from workers.payments import create_payment_setup
    from workers.webhook_events import on_setup_intent_succeeded

    client = stripe_env.client()
    setup = create_payment_setup(payee_id)
    intent = client.v1.setup_intents.confirm(setup["setup_intent_id"], {"payment_method": _card(client, number)})
    assert intent.status == "requires_action"  # both cards ask at set-up
    if authenticate:
        _authenticate(stripe_env, "setup_intents", intent.id, setup["client_secret"])
        _handle(on_setup_intent_succeeded, {"id": intent.id})  # what the setup_intent.succeeded event does
    return setup["customer_id"]


def _book(task_queue, enrollment_id):
    from workers.tasks import book_enrollment

    book_enrollment(enrollment_id)
    task_queue.run_all()


def _handle(handler, obj):
    """What the process_stripe_event task does with a handler: run it, enqueue what it leaves."""
    from workers.stripe_gateway import StripeGateway
    from workers.tasks import enqueue_follow_ups
    from workers.webhook_events import handle

    enqueue_follow_ups(handle(handler, StripeGateway(), obj))


def _payment_succeeded(task_queue, intent_id):
    from workers.webhook_events import on_payment_intent

    _handle(on_payment_intent, {"id": intent_id})
    task_queue.run_all()


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_card_authenticated_at_setup_books_without_asking_again(session, stripe_env, task_queue, frequency):
    enrollment, payee, _, _ = provisional_booking(session, frequency=frequency)
    set_up_card(stripe_env, payee.id, ONCE)
    _book(task_queue, enrollment.id)

    enrollment = _reload(session, enrollment.id)
    assert enrollment.status == "active", enrollment.failure_reason
    assert enrollment.action_client_secret is None
    from models.people import Payee

    assert session.get(Payee, payee.id).stripe_payment_method_id.startswith("pm_")  # the default card remembered
    assert len(_emails(session, "booking_confirmation")) == 1
    assert _emails(session, "payment_action_required") == []


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_payment_needing_the_parent_keeps_the_slot_then_activates_once_authenticated(session, stripe_env, task_queue, frequency):
    from webapi.parent_bookings import _payment_action

    enrollment, payee, _, _ = provisional_booking(session, frequency=frequency)
    customer_id = set_up_card(stripe_env, payee.id, ALWAYS)
    before = utcnow()
    _book(task_queue, enrollment.id)

    waiting = _reload(session, enrollment.id)
    assert waiting.status == "action_required"
    # The hold is extended to the window (24 h by default; 22 h for a subscription, whose first
    # invoice Stripe gives up on after 23 h), not the 30-minute provisional hold.
    window = timedelta(hours=22) if frequency == "monthly" else timedelta(hours=24)
    assert before + window - timedelta(minutes=1) <= waiting.provisional_expires_at <= utcnow() + window
    action = _payment_action(waiting)
    assert action.type == "authenticate_payment" and action.client_secret == waiting.action_client_secret
    intent = stripe_env.client().v1.payment_intents.retrieve(waiting.stripe_payment_intent_id)
    assert intent.client_secret == action.client_secret and intent.status == "requires_action"
    assert intent.customer == customer_id
    if frequency == "monthly":
        assert waiting.stripe_subscription_id and action.url is None or action.url.startswith("http")
    [email] = _emails(session, "payment_action_required")
    assert email.recipient == payee.email and email.status == "sent"
    assert _emails(session, "booking_confirmation") == []

    _book(task_queue, enrollment.id)  # a re-run while the parent has not answered changes nothing
    assert _reload(session, enrollment.id).status == "action_required"
    assert len(_emails(session, "payment_action_required")) == 1

    _authenticate(stripe_env, "payment_intents", intent.id, intent.client_secret)
    _payment_succeeded(task_queue, intent.id)
    _payment_succeeded(task_queue, intent.id)  # delivered twice

    active = _reload(session, enrollment.id)
    assert active.status == "active" and active.action_client_secret is None and active.provisional_expires_at is None
    assert len(_emails(session, "booking_confirmation")) == 1
    assert stripe_env.client().v1.payment_intents.retrieve(intent.id).status == "succeeded"


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_failed_check_keeps_waiting_and_the_window_end_expires_it_with_nothing_charged(
    session, stripe_env, task_queue, frequency
):
    from workers.periodic import expire_provisional_holds

    enrollment, payee, _, _ = provisional_booking(session, frequency=frequency)
    customer_id = set_up_card(stripe_env, payee.id, ALWAYS)
    _book(task_queue, enrollment.id)
    waiting = _reload(session, enrollment.id)
    intent = stripe_env.client().v1.payment_intents.retrieve(waiting.stripe_payment_intent_id)
    _authenticate(stripe_env, "payment_intents", intent.id, intent.client_secret, success=False)
    _payment_succeeded(task_queue, intent.id)  # a payment_intent.payment_failed event re-runs the same handler
    assert _reload(session, enrollment.id).status == "action_required"  # the parent may try again

    # The window passes.
    waiting = _reload(session, enrollment.id)
    waiting.provisional_expires_at = utcnow() - timedelta(seconds=1)
    session.add(waiting)
    session.commit()
    expire_provisional_holds()
    task_queue.run_all()

    expired = _reload(session, enrollment.id)
    assert expired.status == "expired" and expired.action_client_secret is None
    client = stripe_env.client()
    assert client.v1.payment_intents.retrieve(intent.id).status == "canceled"
    if frequency == "monthly":
        assert client.v1.invoices.retrieve(expired.stripe_invoice_id).status == "void"
    for subscription in stripe_env.subscriptions(customer_id):
        assert subscription["status"] in ("canceled", "incomplete_expired")
    charges = [c for c in client.v1.charges.list({"customer": customer_id}).data if c.status == "succeeded"]
    assert charges == []
    assert len(_emails(session, "hold_expired")) == 1
    assert any("expired" in email.subject for email in _emails(session, "admin_alert"))


def _renewal_needing_the_parent(stripe_env, customer_id: str, subscription_id: str):
    """A renewal invoice charged to a card whose bank asks every time; returns (invoice, intent)."""
    client = stripe_env.client()
    card = client.v1.payment_methods.attach(_card(client, ALWAYS), {"customer": customer_id})
    client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": card.id}})
    client.v1.invoice_items.create({"customer": customer_id, "amount": 12000, "currency": "usd"})
    invoice = client.v1.invoices.pay(client.v1.invoices.create({"customer": customer_id, "subscription": subscription_id}).id)
    intent = client.v1.payment_intents.retrieve(invoice.payment_intent)
    assert invoice.status == "open" and intent.status == "requires_action"
    return invoice, intent


@pytest.mark.parametrize("order", ["action_first", "failed_first"])
def test_renewal_needing_authentication_is_past_due_with_the_link_then_active_when_paid(session, stripe_env, task_queue, order):
    from tests.support.booking import active_booking
    from webapi.parent_bookings import _payment_action
    from workers.webhook_events import on_invoice_paid, on_invoice_payment_action_required, on_invoice_payment_failed

    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    invoice, intent = _renewal_needing_the_parent(stripe_env, customer_id, enrollment.stripe_subscription_id)
    handlers = [on_invoice_payment_action_required, on_invoice_payment_failed]
    for handler in (handlers if order == "action_first" else handlers[::-1]) * 2:  # both events, twice
        _handle(handler, {"id": invoice.id})
    task_queue.run_all()

    past_due = _reload(session, enrollment.id)
    assert past_due.status == "past_due"
    action = _payment_action(past_due)
    assert action is not None and action.client_secret == intent.client_secret
    [email] = _emails(session, "payment_action_required")
    assert email.context["renewal"] is True and email.status == "sent"
    assert _emails(session, "payment_failed") == []  # one story for the parent: authenticate

    _authenticate(stripe_env, "payment_intents", intent.id, intent.client_secret)
    _handle(on_invoice_paid, {"id": invoice.id})
    task_queue.run_all()
    active = _reload(session, enrollment.id)
    assert active.status == "active" and active.action_client_secret is None and _payment_action(active) is None


def _waiting(session, stripe_env, task_queue, frequency):
    enrollment, payee, _, _ = provisional_booking(session, frequency=frequency)
    customer_id = set_up_card(stripe_env, payee.id, ALWAYS)
    _book(task_queue, enrollment.id)
    waiting = _reload(session, enrollment.id)
    assert waiting.status == "action_required"
    intent = stripe_env.client().v1.payment_intents.retrieve(waiting.stripe_payment_intent_id)
    return waiting, intent, customer_id


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_a_payment_whose_event_was_lost_is_found_by_the_reconciliation_job(session, stripe_env, task_queue, frequency):
    from workers.periodic import reconcile_bookings

    waiting, intent, _ = _waiting(session, stripe_env, task_queue, frequency)
    _authenticate(stripe_env, "payment_intents", intent.id, intent.client_secret)  # no event reaches us
    assert reconcile_bookings(stale_after=timedelta(0)) == {"requeued": [waiting.id]}
    task_queue.run_all()
    assert _reload(session, waiting.id).status == "active"
    assert len(_emails(session, "booking_confirmation")) == 1


@pytest.mark.parametrize("frequency", ["monthly", "semester"])
def test_the_expiry_job_asks_stripe_before_expiring_a_waiting_booking(session, stripe_env, task_queue, frequency):
    from workers.periodic import expire_provisional_holds

    waiting, intent, customer_id = _waiting(session, stripe_env, task_queue, frequency)
    _authenticate(stripe_env, "payment_intents", intent.id, intent.client_secret)  # paid a moment before the end
    waiting.provisional_expires_at = utcnow() - timedelta(seconds=1)
    session.add(waiting)
    session.commit()

    assert expire_provisional_holds() == {"expired": [], "paid_in_time": [waiting.id], "unchecked": []}
    task_queue.run_all()
    assert _reload(session, waiting.id).status == "active"
    assert stripe_env.client().v1.refunds.list({"payment_intent": intent.id}).data == []  # the family keeps its lessons


def test_an_admin_cancelling_a_waiting_booking_leaves_nothing_payable(session, stripe_env, task_queue):
    from models.db import session_scope
    from models.enrollment import cancel_enrollment
    from workers.tasks import cancel_subscription

    waiting, intent, _ = _waiting(session, stripe_env, task_queue, "monthly")
    with session_scope() as unit:
        cancel_enrollment(unit, waiting, reason="family moved", actor="admin")
    assert cancel_subscription.call_local(waiting.id) == "cancelled"
    client = stripe_env.client()
    # Stripe leaves a cancelled subscription's open invoice open (its hosted page payable): voided.
    assert client.v1.invoices.retrieve(waiting.stripe_invoice_id).status == "void"
    assert client.v1.payment_intents.retrieve(intent.id).status == "canceled"


def test_stripe_giving_up_on_the_first_invoice_expires_the_booking_at_once(session, stripe_env, task_queue):
    waiting, _, _ = _waiting(session, stripe_env, task_queue, "monthly")
    # 23 hours later Stripe expires the incomplete subscription (and voids its invoice).
    stripe_env._request(
        "POST", f"/_config/compat/subscriptions/{waiting.stripe_subscription_id}", {"status": "incomplete_expired"}
    )
    _book(task_queue, waiting.id)  # the subscription event (or the reconciliation job) re-runs the pipeline
    expired = _reload(session, waiting.id)
    assert expired.status == "expired"
    assert len(_emails(session, "hold_expired")) == 1
