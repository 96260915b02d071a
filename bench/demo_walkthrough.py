"""One booking's whole life on the embedded default, printed step by step (`make demo`).

    python -m bench.demo_walkthrough

Starts the local Stripe server (localstripe + our compat layer) on a free loopback port,
keeping its state beside the database so a second run finds the customers of the first;
then: payment setup → the parent's card (what Stripe.js does) → a provisional booking →
the worker runs the queued tasks (Huey's SQLite queue) → `active` → the confirmation email
in the outbox. Safe to run again: each run books another free slot.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}", flush=True)


def _choose(session):
    """A family (preferably one Stripe does not know yet), its student, a free slot, the monthly plan."""
    from sqlmodel import select

    from models.billing import get_plan
    from models.enrollment import live_enrollment_for_slot
    from models.people import Payee, Student, teacher_instruments
    from models.scheduling import Timeslot

    payees = list(session.exec(select(Payee).order_by(Payee.stripe_customer_id.is_not(None), Payee.id)).all())
    student = next(
        (student for payee in payees for student in session.exec(select(Student).where(Student.payee_id == payee.id)).all()), None
    )
    if student is None:
        raise SystemExit("no family in the database: run `studioctl seed demo` first")
    for slot in session.exec(select(Timeslot).where(Timeslot.active.is_(True)).order_by(Timeslot.id)).all():
        if live_enrollment_for_slot(session, slot.id) is None:
            instruments = teacher_instruments(session, slot.teacher_id)
            if instruments:
                return session.get(Payee, student.payee_id), student, slot, instruments[0], get_plan(session, "monthly")
    raise SystemExit("every slot is taken: nothing left to book")


def _forget_stripe_ids() -> None:
    """A fresh local Stripe knows none of the ids an earlier run stored: forget them (demo only)."""
    import sqlalchemy as sa

    from models.billing import Plan
    from models.db import session_scope
    from models.people import Payee

    with session_scope() as session:
        plans = session.execute(sa.update(Plan).where(Plan.stripe_price_id.is_not(None))
                                .values(stripe_price_id=None, stripe_product_id=None)).rowcount
        payees = session.execute(sa.update(Payee).where(Payee.stripe_customer_id.is_not(None))
                                 .values(stripe_customer_id=None)).rowcount
    if plans or payees:
        print(f"(a fresh local Stripe: forgot the Stripe ids of {plans} plan(s) and {payees} family(ies) from an earlier run)")


def main() -> None:
    from models.config import get_settings, reset_settings
    from tests.support import stripe_server

    settings = get_settings()
    database = (settings.sqlite_path or Path("studio.db")).resolve()
    pickle_path = str(database.with_name(database.stem + "-stripe.pickle"))
    if not Path(pickle_path).exists():
        _forget_stripe_ids()
    process, base_url = stripe_server.start_subprocess(pickle_path=pickle_path)
    os.environ.update(STRIPE_SECRET_KEY="sk_test_demo", STRIPE_API_BASE=base_url,
                      STRIPE_WEBHOOK_SECRET=os.environ.get("STRIPE_WEBHOOK_SECRET") or "whsec_demo")
    reset_settings()
    try:
        walk(base_url)
    finally:
        process.terminate()
        process.wait(timeout=10)


def walk(base_url: str) -> None:
    import stripe
    from sqlmodel import select

    from models.db import after_commit, session_scope
    from models.enrollment import Enrollment, hold_slot
    from models.outbox import EmailLog
    from workers import tasks
    from workers.app import huey
    from workers.payments import create_payment_setup

    settings_url = base_url
    step(1, f"local Stripe server on {settings_url} (localstripe + compat layer, loopback only)")

    with session_scope(write=False) as session:
        payee, student, slot, instrument, plan = _choose(session)
        payee_id, student_id, slot_id = payee.id, student.id, slot.id
        print(f"    family: {payee.name} <{payee.email}>, student {student.name}")
        print(f"    slot {slot.id}: {slot.label}, {instrument}; plan {plan.id} {plan.frequency} {plan.amount:.2f} {plan.currency}")

    step(2, "payment setup (POST /parent/payment-setup → a SetupIntent client secret)")
    setup = create_payment_setup(payee_id)
    print(f"    customer {setup['customer_id']}, setup intent {setup['setup_intent_id']}")
    client = stripe.StripeClient("sk_test_demo", base_addresses={"api": base_url}, max_network_retries=0)
    intent = client.v1.setup_intents.confirm(setup["setup_intent_id"], {"payment_method": "pm_card_visa"})
    print(f"    the parent's browser confirms it with a test Visa: {intent.status}, card {intent.payment_method}")

    step(3, "booking (POST /parent/bookings → a provisional hold, the booking task queued after commit)")
    with session_scope() as session:
        enrollment = hold_slot(session, payee=session.get(type(payee), payee_id), student_id=student_id, timeslot_id=slot_id,
                               instrument=instrument, plan=plan.id, actor=f"payee:{payee_id}")
        enrollment_id = enrollment.id
        after_commit(session, lambda: tasks.book_enrollment(enrollment_id))
    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        print(f"    enrollment {enrollment_id}: {enrollment.status}, hold until {enrollment.provisional_expires_at:%H:%M:%S} UTC")

    step(4, f"worker: running the queued tasks ({huey.name} queue in {type(huey.storage).__name__})")
    deadline = time.monotonic() + 60
    done = False
    while time.monotonic() < deadline and not done:
        task = huey.dequeue()
        if task is None:
            with session_scope(write=False) as session:
                status = session.get(Enrollment, enrollment_id).status
                pending = session.exec(select(EmailLog).where(EmailLog.status.in_(("queued", "sending")),
                                                              EmailLog.dedupe_key.like(f"%:{enrollment_id}"))).first()
            done = status != "provisional" and pending is None
            time.sleep(0.1)
            continue
        result = huey.execute(task)
        print(f"    ran {task.name}{tuple(task.args)} → {result}")

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        emails = list(session.exec(select(EmailLog).where(EmailLog.dedupe_key.like(f"%:{enrollment_id}"))).all())
    step(5, f"enrollment {enrollment_id} is {enrollment.status.upper()} (pipeline {enrollment.pipeline_state})")
    if enrollment.stripe_subscription_id:
        subscription = client.v1.subscriptions.retrieve(enrollment.stripe_subscription_id)
        invoice = client.v1.invoices.retrieve(enrollment.stripe_invoice_id) if enrollment.stripe_invoice_id else None
        print(f"    Stripe: customer {subscription.customer}, subscription {subscription.id} ({subscription.status}), "
              f"invoice {invoice.id if invoice else '-'} ({invoice.status if invoice else '-'}, {invoice.amount_paid if invoice else 0} cents)")
    for email in emails:
        print(f"    email {email.id}: {email.template} to {email.recipient}: {email.status} "
              f"(attempts {email.attempts}, {email.provider_message_id})")
    from models.config import get_settings

    outbox = Path(get_settings().OUTBOX_DIR)
    files = sorted(outbox.glob("*booking_confirmation.eml"))
    if files:
        print(f"    the confirmation is in the outbox: {files[-1]}")
    if enrollment.status != "active":
        print(f"    the booking did not complete: {enrollment.failure_reason or enrollment.pipeline_state}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
