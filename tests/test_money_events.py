"""Money events from Stripe (`workers/money_events.py`): disputes, refunds, failed card setups,
detached cards, deleted customers, paused subscriptions. Each event is signed, posted to the
webhook endpoint twice (and out of order where it matters), stored once, and processed by
re-reading the object from localstripe (+ compat layer, which shapes disputes, pauses and
failed setups like today's API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlmodel import select

from models import billing
from models.audit import AuditLog
from models.billing import StripeEvent
from models.config import get_settings
from models.enrollment import Enrollment
from models.money_events import Dispute, StripeRefund
from models.outbox import EmailLog
from models.people import Payee
from tests.support import cli, webhooks
from tests.support.booking import active_booking, add_card, provisional_booking
from tests.support.fixtures import WEBHOOK_SECRET
from workers.stripe_shapes import object_id

pytestmark = pytest.mark.slow
ADMIN = "admin@studio.test"


@pytest.fixture
def client():
    from webapi.webhooks import bp

    app = Flask("money-events-test")
    app.register_blueprint(bp)
    return app.test_client()


def _deliver(session, client, task_queue, *events: tuple[str, dict]) -> list[str]:
    """Post each (type, object) event twice, as Stripe may, then run the queued tasks; the
    stored events' statuses, in delivery order."""
    ids = []
    for type_, obj in events:
        payload = webhooks.event(type_, obj)
        for _ in range(2):
            assert webhooks.post(client, payload, WEBHOOK_SECRET).status_code == 200
        ids.append(payload["id"])
    task_queue.run_all()
    session.expire_all()
    rows = {row.stripe_event_id: row.status for row in session.exec(select(StripeEvent)).all()}
    return [rows[event_id] for event_id in ids]


def _alerts(session, prefix: str) -> list[EmailLog]:
    session.expire_all()
    return list(
        session.exec(select(EmailLog).where(EmailLog.template == "admin_alert", EmailLog.dedupe_key.startswith(prefix))).all()
    )


def _audits(session, action: str) -> list[AuditLog]:
    session.expire_all()
    return list(session.exec(select(AuditLog).where(AuditLog.action == action)).all())


def _charge_of(stripe_env, enrollment: Enrollment) -> dict:
    """The charge that paid an enrollment's first invoice (a subscription) or its semester."""
    stripe = stripe_env.client()
    intent_id = enrollment.stripe_payment_intent_id or stripe.v1.invoices.retrieve(enrollment.stripe_invoice_id).payment_intent
    charge_id = object_id(stripe.v1.payment_intents.retrieve(intent_id).to_dict()["latest_charge"])
    return stripe.v1.charges.retrieve(charge_id).to_dict()


def _card_of(stripe_env, customer_id: str) -> str:
    """The card the parent's SetupIntent attached to the customer."""
    [card] = stripe_env.client().v1.payment_methods.list({"customer": customer_id, "type": "card"}).data
    return card.id


def _compat(stripe_env, path: str, body: dict) -> dict:
    return stripe_env._request("POST", f"/_config/compat/{path}", body)


# Disputes ------------------------------------------------------------------------------

DUE_BY = int(datetime(2027, 1, 15, 4, 59, tzinfo=UTC).timestamp())  # 23:59 the day before in New York


def test_a_dispute_in_any_order_is_one_row_in_its_final_state_with_one_alert_per_kind(session, stripe_env, client, task_queue):
    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    payee = session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).one()
    charge = _charge_of(stripe_env, enrollment)
    opened = _compat(stripe_env, "disputes", {"charge": charge["id"], "reason": "fraudulent", "due_by": DUE_BY})
    assert opened["status"] == "needs_response" and opened["evidence_details"]["due_by"] == DUE_BY

    assert _deliver(session, client, task_queue, ("charge.dispute.created", opened)) == ["processed"]
    [row] = session.exec(select(Dispute)).all()
    assert (row.stripe_dispute_id, row.charge_id, row.payee_id, row.enrollment_id) == (
        opened["id"],
        charge["id"],
        payee.id,
        enrollment.id,
    )
    assert row.payment_intent_id == charge["payment_intent"]
    assert (row.amount_cents, row.currency, row.reason, row.status) == (12000, "usd", "fraudulent", "needs_response")
    assert row.evidence_due_by == datetime.fromtimestamp(DUE_BY, UTC) and row.closed_at is None
    [alert] = _alerts(session, f"dispute_opened:{opened['id']}")
    message = alert.context["message"]
    assert alert.recipient == ADMIN
    assert payee.name in message and payee.email in message and "120.00 USD" in message
    assert "2027-01-14 23:59 EST" in message and "America/New_York" in message  # the deadline, studio time
    assert cli.ok_json("stripe", "disputes", "--open")[0]["stripe_dispute_id"] == opened["id"]

    # The bank decides; the events arrive late, twice each, the oldest snapshot last.
    under_review = _compat(stripe_env, f"disputes/{opened['id']}", {"status": "under_review"})
    lost = _compat(stripe_env, f"disputes/{opened['id']}", {"status": "lost"})
    statuses = _deliver(
        session,
        client,
        task_queue,
        ("charge.dispute.closed", lost),
        ("charge.dispute.funds_withdrawn", lost),
        ("charge.dispute.updated", under_review),
        ("charge.dispute.created", opened),
    )
    assert statuses == ["processed"] * 4
    [row] = session.exec(select(Dispute)).all()
    assert row.status == "lost" and row.closed_at is not None and row.enrollment_id == enrollment.id
    assert len(_alerts(session, f"dispute_opened:{opened['id']}")) == 1
    [closed] = _alerts(session, f"dispute_closed:{opened['id']}")
    assert "lost" in closed.context["alert_subject"] and payee.email in closed.context["message"]
    assert "120.00 USD" in closed.context["message"]
    assert len(_audits(session, "dispute.record")) == 1 and len(_audits(session, "dispute.update")) == 1

    assert cli.ok_json("stripe", "disputes", "--open") == []
    [listed] = cli.ok_json("stripe", "disputes")
    assert (listed["status"], listed["amount"], listed["payee_email"]) == ("lost", "120.00 USD", payee.email)
    table = cli.ok("stripe", "disputes").stdout
    assert "lost" in table and "120.00 USD" in table and "2027-01-14" in table and payee.name in table


def test_a_dispute_first_seen_decided_is_told_once_as_decided(session, stripe_env, client, task_queue):
    enrollment, _ = active_booking(session, stripe_env, task_queue, frequency="semester")
    charge = _charge_of(stripe_env, enrollment)
    opened = _compat(stripe_env, "disputes", {"charge": charge["id"], "reason": "product_not_received"})
    won = _compat(stripe_env, f"disputes/{opened['id']}", {"status": "won"})
    statuses = _deliver(
        session,
        client,
        task_queue,
        ("charge.dispute.closed", won),
        ("charge.dispute.created", opened),
        ("charge.dispute.created", {"id": "dp_unknown_to_stripe", "object": "dispute"}),
    )
    assert statuses == ["processed", "processed", "ignored"]
    [row] = session.exec(select(Dispute)).all()
    assert row.status == "won" and row.enrollment_id == enrollment.id  # found by the PaymentIntent's metadata
    assert _alerts(session, "dispute_opened:") == []  # nothing to answer any more
    [closed] = _alerts(session, f"dispute_closed:{opened['id']}")
    assert "stays with the studio" in closed.context["message"]


# Refunds -------------------------------------------------------------------------------


def test_a_refund_made_in_the_stripe_dashboard_is_recorded_and_told_once(session, stripe_env, client, task_queue):
    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    payee = session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).one()
    charge = _charge_of(stripe_env, enrollment)
    refund = stripe_env.client().v1.refunds.create({"charge": charge["id"], "amount": 5000}).to_dict()  # the dashboard
    refunded = stripe_env.client().v1.charges.retrieve(charge["id"]).to_dict()
    statuses = _deliver(
        session, client, task_queue, ("charge.refund.updated", refund), ("charge.refunded", refunded), ("charge.refunded", charge)
    )  # a stale snapshot, from before the refund
    assert statuses == ["processed"] * 3
    [row] = session.exec(select(StripeRefund)).all()
    assert (row.stripe_refund_id, row.charge_id, row.payee_id, row.enrollment_id) == (
        refund["id"],
        charge["id"],
        payee.id,
        enrollment.id,
    )
    assert (row.amount_cents, row.currency, row.status) == (5000, "usd", "succeeded")
    [alert] = _alerts(session, f"stripe_refund:{refund['id']}")
    assert "50.00 USD" in alert.context["message"] and payee.email in alert.context["message"]
    assert session.get(Enrollment, enrollment.id).status == "active"  # the admin decides what it means
    [listed] = cli.ok_json("stripe", "refunds")
    assert (listed["stripe_refund_id"], listed["amount"]) == (refund["id"], "50.00 USD")
    assert "50.00 USD" in cli.ok("stripe", "refunds").stdout


def test_our_own_refund_of_a_late_charge_is_recorded_without_a_dashboard_alert(session, stripe_env, client, task_queue):
    from models.base import utcnow
    from models.db import session_scope
    from models.enrollment import expire_provisional_holds
    from workers.booking_activation import undo_orphan_charges
    from workers.stripe_gateway import StripeGateway

    enrollment, payee, _, _ = provisional_booking(session, frequency="semester", amount_cents=3000)
    customer_id = add_card(stripe_env.client(), payee.id)
    gateway = StripeGateway()
    # A worker charged the semester, then died before recording it; the hold expired since.
    intent = gateway.charge_off_session(
        enrollment_id=enrollment.id,
        customer_id=customer_id,
        payment_method_id=gateway.default_payment_method(customer_id),
        amount_cents=9000,
        currency="usd",
        key=f"test-{enrollment.id}",
    )
    with session_scope() as unit:
        expire_provisional_holds(unit, now=utcnow() + timedelta(days=1))
    assert undo_orphan_charges(enrollment.id) == "undone"
    assert len(_alerts(session, f"late_charge:{enrollment.id}")) == 1
    [refund] = [r.to_dict() for r in stripe_env.client().v1.refunds.list({"charge": object_id(intent["latest_charge"])}).data]
    assert refund["metadata"] == {"source": "studio"}

    charge = stripe_env.client().v1.charges.retrieve(object_id(intent["latest_charge"])).to_dict()
    assert _deliver(session, client, task_queue, ("charge.refunded", charge)) == ["processed"]
    [row] = session.exec(select(StripeRefund)).all()
    assert (row.stripe_refund_id, row.enrollment_id, row.payee_id, row.amount_cents) == (
        refund["id"],
        enrollment.id,
        payee.id,
        9000,
    )
    assert _alerts(session, "stripe_refund") == []


def test_a_charge_stripe_does_not_know_is_ignored(session, stripe_env, client, task_queue):
    assert _deliver(session, client, task_queue, ("charge.refunded", {"id": "ch_unknown", "object": "charge"})) == ["ignored"]
    assert session.exec(select(StripeRefund)).all() == []


class TodaysStripe:
    """Objects as the current API (`2026-10-28.endive`) renders them, trimmed from the examples
    in stripe/openapi `fixtures3.json`: no `invoice` on charges or PaymentIntents, ids (not
    objects) for expandable fields, `charge.refunds` absent unless expanded."""

    def __init__(self):
        self.dispute = {
            "id": "dp_1Pgc71B7WZ01zgkWMevJiAUx",
            "object": "dispute",
            "amount": 9000,
            "balance_transactions": [],
            "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            "created": 1234567890,
            "currency": "usd",
            "evidence_details": {
                "due_by": DUE_BY,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
                "enhanced_eligibility": {},
            },
            "is_charge_refundable": True,
            "livemode": False,
            "metadata": {},
            "payment_intent": "pi_today",
            "payment_method_details": {
                "card": {"brand": "visa", "case_type": "inquiry", "network_reason_code": "10.4", "network": "visa"},
                "type": "card",
            },
            "reason": "general",
            "status": "warning_needs_response",
            "enhanced_eligibility_types": [],
        }
        self.charge = {
            "id": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            "object": "charge",
            "amount": 9000,
            "amount_refunded": 0,
            "currency": "usd",
            "customer": "cus_today",
            "disputed": True,
            "metadata": {},
            "paid": True,
            "payment_intent": "pi_today",
            "payment_method": "pm_today",
            "refunded": False,
            "status": "succeeded",
        }
        self.intent = {
            "id": "pi_today",
            "object": "payment_intent",
            "amount": 9000,
            "currency": "usd",
            "customer": "cus_today",
            "latest_charge": self.charge["id"],
            "metadata": {},
            "status": "succeeded",
        }
        self.refunds = [
            {
                "id": "re_1Pgc72B7WZ01zgkWqPvrRrPE",
                "object": "refund",
                "amount": 4000,
                "balance_transaction": None,
                "charge": self.charge["id"],
                "created": 1234567890,
                "currency": "usd",
                "metadata": {},
                "payment_intent": "pi_today",
                "reason": "requested_by_customer",
                "status": "pending",
                "destination_details": {"card": {"type": "reversal"}, "type": "card"},
            }
        ]

    def retrieve_dispute(self, dispute_id):
        return dict(self.dispute)

    def retrieve_charge(self, charge_id):
        return dict(self.charge)

    def retrieve_payment_intent(self, intent_id):
        return dict(self.intent)

    def list_refunds(self, charge_id):
        return [dict(refund) for refund in self.refunds]


def test_todays_shapes_are_read_too(session):
    """A semester payment (no metadata on the charge, no invoice anywhere) disputed as an inquiry
    and refunded from the dashboard, read as the current API shows them."""
    from models import enrollment as enrollment_ops
    from models.db import session_scope
    from workers.money_events import on_dispute, on_refund

    enrollment, payee, _, _ = provisional_booking(session, frequency="semester")
    enrollment_ops.activate_enrollment(session, enrollment, actor="worker", payment_intent_id="pi_today")
    with session_scope() as unit:
        billing.link_stripe_customer(unit, payee.id, "cus_today", actor="worker")
    stripe = TodaysStripe()
    assert on_dispute(stripe, {"id": stripe.dispute["id"]}) == "processed"
    stripe.dispute["status"] = "warning_closed"
    assert on_dispute(stripe, {"id": stripe.dispute["id"]}) == "processed"
    session.expire_all()
    [row] = session.exec(select(Dispute)).all()
    assert (row.payee_id, row.enrollment_id, row.payment_intent_id, row.status) == (
        payee.id,
        enrollment.id,
        "pi_today",
        "warning_closed",
    )
    [opened] = _alerts(session, "dispute_opened:")
    assert "90.00 USD" in opened.context["message"] and "2027-01-14 23:59 EST" in opened.context["message"]
    [closed] = _alerts(session, "dispute_closed:")
    assert "without becoming a chargeback" in closed.context["message"]

    refund_event = dict(stripe.refunds[0])  # `charge.refund.updated` carries the refund
    assert on_refund(stripe, refund_event) == "processed"
    stripe.refunds[0]["status"] = "failed"
    assert on_refund(stripe, {"id": stripe.charge["id"], "object": "charge"}) == "processed"
    session.expire_all()
    [refund] = session.exec(select(StripeRefund)).all()
    assert (refund.enrollment_id, refund.status, refund.reason) == (enrollment.id, "failed", "requested_by_customer")
    assert len(_alerts(session, "stripe_refund:")) == 1 and len(_alerts(session, "stripe_refund_failed:")) == 1


# Cards and customers -------------------------------------------------------------------


def test_a_failed_card_setup_tells_the_parent_once_and_leaves_the_hold(session, stripe_env, client, task_queue):
    from workers.emails import render_email
    from workers.payments import create_payment_setup
    from workers.stripe_gateway import StripeGateway

    enrollment, payee, _, _ = provisional_booking(session)
    expires = enrollment.provisional_expires_at
    setup = create_payment_setup(payee.id)
    failed = _compat(
        stripe_env,
        f"setup_intents/{setup['setup_intent_id']}/fail",
        {"message": "Your card has insufficient funds.", "decline_code": "insufficient_funds"},
    )
    assert failed["last_setup_error"]["message"] == "Your card has insufficient funds."
    # Another SetupIntent of the family (payment setup reuses an open one: made directly here) that
    # failed once, then worked with another card: nothing to tell.
    recovered = StripeGateway().create_setup_intent(customer_id=setup["customer_id"], payee_id=payee.id)
    stripe_env.client().v1.setup_intents.confirm(recovered["id"], {"payment_method": "pm_card_visa"})
    stale = {"id": recovered["id"], "object": "setup_intent", "last_setup_error": {"message": "declined"}}
    statuses = _deliver(session, client, task_queue, ("setup_intent.setup_failed", failed), ("setup_intent.setup_failed", stale))
    assert statuses == ["processed", "ignored"]

    [email] = session.exec(select(EmailLog).where(EmailLog.template == "card_setup_failed")).all()
    assert email.recipient == payee.email and email.dedupe_key == f"card_setup_failed:{setup['setup_intent_id']}"
    assert email.context["error_message"] == "Your card has insufficient funds."
    assert [hold["enrollment_id"] for hold in email.context["holds"]] == [enrollment.id]
    rendered = render_email("card_setup_failed", email.context)
    assert "insufficient funds" in rendered.text and "insufficient funds" in rendered.html
    assert "America/New_York" in rendered.text and email.context["holds"][0]["expires_at"] in rendered.text
    held = session.get(Enrollment, enrollment.id)
    assert held.status == "provisional" and held.provisional_expires_at == expires


def test_a_detached_card_is_forgotten_as_the_default(session, stripe_env, client, task_queue):
    from models.db import session_scope

    payee = provisional_booking(session)[1]
    other = provisional_booking(session)[1]
    customer_id, other_customer = add_card(stripe_env.client(), payee.id), add_card(stripe_env.client(), other.id)
    stripe = stripe_env.client()
    card, other_card = _card_of(stripe_env, customer_id), _card_of(stripe_env, other_customer)
    with session_scope() as unit:
        assert billing.remember_default_card(unit, payee.id, card) is True
        assert billing.remember_default_card(unit, payee.id, card) is False  # already noted: no audit
        assert billing.remember_default_card(unit, other.id, other_card) is True
    assert len(_audits(session, "payee.default_card")) == 2

    detached = stripe.v1.payment_methods.detach(card).to_dict()
    assert detached["customer"] is None
    still_attached = stripe.v1.payment_methods.retrieve(other_card).to_dict() | {"customer": None}  # a stale event
    statuses = _deliver(
        session, client, task_queue, ("payment_method.detached", detached), ("payment_method.detached", still_attached)
    )
    assert statuses == ["processed", "ignored"]
    assert session.get(Payee, payee.id).stripe_payment_method_id is None
    assert session.get(Payee, other.id).stripe_payment_method_id == other_card
    [audit] = _audits(session, "payee.default_card_detached")
    assert audit.entity_id == str(payee.id) and audit.before["stripe_payment_method_id"] == card


def test_a_deleted_customer_is_forgotten_and_the_next_booking_makes_a_new_one(session, stripe_env, client, task_queue):
    from workers.pipeline import run_booking

    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    payee = session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).one()
    snapshot = stripe_env.client().v1.customers.retrieve(customer_id).to_dict()
    stripe_env.client().v1.customers.delete(customer_id)
    assert _deliver(session, client, task_queue, ("customer.deleted", snapshot)) == ["processed"]
    payee = session.get(Payee, payee.id)
    assert payee.stripe_customer_id is None and payee.stripe_payment_method_id is None
    [alert] = _alerts(session, f"customer_deleted:{customer_id}")
    assert str(enrollment.id) in alert.context["message"] and payee.email in alert.context["message"]

    following, _, _, _ = provisional_booking(session, payee=payee)
    assert run_booking(following.id) == "awaiting_payment_method"  # a new customer, no card yet
    session.expire_all()
    new_customer = session.get(Payee, payee.id).stripe_customer_id
    assert new_customer and new_customer != customer_id
    assert stripe_env.client().v1.customers.retrieve(new_customer).email == payee.email


def test_a_deleted_customer_is_forgotten_once_and_the_admin_told_of_its_subscriptions(session, stripe_env, client, task_queue):
    enrollment, customer_id = active_booking(session, stripe_env, task_queue)
    payee = session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).one()
    card = _card_of(stripe_env, customer_id)
    from models.db import session_scope

    with session_scope() as unit:
        assert billing.remember_default_card(unit, payee.id, card)
    snapshot = stripe_env.client().v1.customers.retrieve(customer_id).to_dict()
    # While Stripe still has the customer, a customer.deleted is not believed.
    assert _deliver(session, client, task_queue, ("customer.deleted", snapshot)) == ["ignored"]
    assert session.get(Payee, payee.id).stripe_customer_id == customer_id

    stripe_env.client().v1.customers.delete(customer_id)
    assert _deliver(session, client, task_queue, ("customer.deleted", snapshot), ("customer.deleted", snapshot)) == [
        "processed",
        "ignored",
    ]  # the second one finds nobody left to forget
    payee = session.get(Payee, payee.id)
    assert payee.stripe_customer_id is None and payee.stripe_payment_method_id is None
    [audit] = _audits(session, "payee.stripe_customer_deleted")
    assert audit.before["stripe_customer_id"] == customer_id and audit.before["stripe_payment_method_id"] == card
    [alert] = _alerts(session, f"customer_deleted:{customer_id}")
    assert f"enrollment(s) {enrollment.id}" in alert.context["message"] and payee.email in alert.context["message"]


def test_a_deleted_customer_with_nothing_billed_is_forgotten_without_an_alert(session, stripe_env, client, task_queue):
    _, payee, _, _ = provisional_booking(session)
    customer_id = add_card(stripe_env.client(), payee.id)
    snapshot = stripe_env.client().v1.customers.retrieve(customer_id).to_dict()
    stripe_env.client().v1.customers.delete(customer_id)
    assert _deliver(session, client, task_queue, ("customer.deleted", snapshot)) == ["processed"]
    assert session.get(Payee, payee.id).stripe_customer_id is None
    assert _alerts(session, "customer_deleted:") == []


# Paused subscriptions ------------------------------------------------------------------


def _lessons(session, enrollment: Enrollment) -> tuple[int, int]:
    """(lessons on the admin's dashboard on the first lesson day, the family's calendar entries)."""
    from models.calendar import family_calendar
    from models.dashboard import day_schedule
    from models.enrollment import payee_of
    from tests.support.booking import local_today

    session.expire_all()
    enrollment = session.get(Enrollment, enrollment.id)
    dashboard = [
        lesson for lesson in day_schedule(session, enrollment.start_date)["lessons"] if lesson["enrollment_id"] == enrollment.id
    ]
    calendar = [
        entry
        for entry in family_calendar(session, payee_of(session, enrollment).id, tz=get_settings().tz, today=local_today())
        if entry.uid.startswith(f"enrollment-{enrollment.id}-")
    ]
    return len(dashboard), len(calendar)


def test_a_paused_subscription_pauses_the_enrollment_and_its_lessons_until_resumed(session, stripe_env, client, task_queue):
    enrollment, _ = active_booking(session, stripe_env, task_queue)
    subscription_id = enrollment.stripe_subscription_id
    dashboard, calendar = _lessons(session, enrollment)
    assert dashboard == 1 and calendar > 1

    collection_paused = _compat(
        stripe_env, f"subscriptions/{subscription_id}", {"pause_collection": {"behavior": "void", "resumes_at": None}}
    )
    assert _deliver(session, client, task_queue, ("customer.subscription.updated", collection_paused)) == ["processed"]
    assert session.get(Enrollment, enrollment.id).status == "paused"
    assert _lessons(session, enrollment) == (0, 0)

    paused = _compat(stripe_env, f"subscriptions/{subscription_id}", {"status": "paused", "pause_collection": None})
    assert _deliver(session, client, task_queue, ("customer.subscription.paused", paused)) == ["processed"]
    assert session.get(Enrollment, enrollment.id).status == "paused"

    resumed = _compat(stripe_env, f"subscriptions/{subscription_id}", {"status": "active", "pause_collection": None})
    # the stale `paused` snapshot arrives after the resume: Stripe says active
    statuses = _deliver(
        session, client, task_queue, ("customer.subscription.resumed", resumed), ("customer.subscription.paused", paused)
    )
    assert statuses == ["processed", "processed"]
    assert session.get(Enrollment, enrollment.id).status == "active"
    assert _lessons(session, enrollment) == (dashboard, calendar)
