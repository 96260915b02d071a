"""Arranging bookings for the workers' tests: a provisional enrollment, a card in localstripe."""

from __future__ import annotations

from datetime import date, timedelta

from models import booking
from models.base import utcnow
from models.config import get_settings
from models.enrollment import Enrollment
from tests import factories


def local_today() -> date:
    return utcnow().astimezone(get_settings().tz).date()


def provisional_booking(
    session, *, frequency: str = "monthly", amount_cents: int = 12000, with_semester: bool = False, closures: int = 0, payee=None
):
    """A provisional enrollment on a fresh slot; returns (enrollment, payee, plan)."""
    today = local_today()
    semester = None
    if with_semester or frequency == "semester":
        first_closure = today + timedelta(days=15)  # on the slot's weekday (today + 1)
        semester = factories.semester(
            session,
            starts=today,
            ends=today + timedelta(days=69),
            closures=[first_closure + timedelta(days=7 * k) for k in range(closures)],
        )
    payee = payee or factories.payee(session)
    student = factories.student(session, payee_row=payee)
    slot = factories.timeslot(session, weekday=(today.weekday() + 1) % 7)
    plan = factories.plan(session, frequency=frequency, amount_cents=amount_cents)
    enrollment = booking.hold_slot(
        session,
        payee=payee,
        student_id=student.id,
        timeslot_id=slot.id,
        instrument="piano",
        plan=plan.id,
        actor=f"payee:{payee.id}",
    )
    session.commit()
    return enrollment, payee, plan, semester


def add_card(stripe_client, payee_id: int, payment_method: str = "pm_card_visa") -> str:
    """What the parent's browser does: payment setup, then Stripe.js confirms the SetupIntent."""
    from workers.payments import create_payment_setup

    setup = create_payment_setup(payee_id)
    stripe_client.v1.setup_intents.confirm(setup["setup_intent_id"], {"payment_method": payment_method})
    return setup["customer_id"]


def fail_renewal(stripe_env, customer_id: str, subscription_id: str) -> str:
    """A renewal invoice charged to a card that declines (Stripe then retries it for days)."""
    client = stripe_env.client()
    bad = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer_id})
    client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": bad.id}})
    client.v1.invoice_items.create({"customer": customer_id, "amount": 12000, "currency": "usd"})
    invoice = client.v1.invoices.create({"customer": customer_id, "subscription": subscription_id})
    invoice = client.v1.invoices.pay(invoice.id)
    assert invoice.status == "open"
    assert client.v1.subscriptions.retrieve(subscription_id).status == "past_due"
    return invoice.id


def active_booking(session, stripe_env, task_queue, *, frequency: str = "monthly", card: str = "pm_card_visa"):
    """A booking taken all the way to `active` by the real pipeline; returns (enrollment, customer id)."""
    from workers.tasks import book_enrollment

    enrollment, payee, _, _ = provisional_booking(session, frequency=frequency)
    customer_id = add_card(stripe_env.client(), payee.id, card)
    book_enrollment(enrollment.id)
    task_queue.run_all()
    session.expire_all()
    enrollment = session.get(Enrollment, enrollment.id)
    assert enrollment.status == "active"
    return enrollment, customer_id


def family_booking(session, stripe_env, task_queue, *, sub: str = "user-c", frequency: str = "monthly", card: bool = True):
    """A signed-in family's booking on a fresh slot, taken to `active` by the real pipeline
    (`card=False`: left provisional); returns (enrollment, the family's API headers)."""
    from tests.support.api import bearer
    from workers.tasks import book_enrollment

    payee = factories.payee(session, email=f"{sub}@family.test", supabase_user_id=sub)
    enrollment, payee, _, _ = provisional_booking(session, frequency=frequency, payee=payee)
    if card:
        add_card(stripe_env.client(), payee.id)
        book_enrollment(enrollment.id)
        task_queue.run_all()
        session.expire_all()
        enrollment = session.get(Enrollment, enrollment.id)
        assert enrollment.status == "active", enrollment.failure_reason
    return enrollment, bearer(sub, payee.email)
