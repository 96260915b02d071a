"""The booking pipeline: a provisional enrollment → Stripe customer → card → billing → active.

Idempotent on the enrollment id, so the task may run any number of times (Huey retries,
the reconciliation job, a restarted worker): each Stripe write has a stable idempotency
key, an existing subscription is found by its `enrollment_id` metadata before a new one
is made, and every local change is guarded by the enrollment's status. Stripe calls run
outside database transactions; each local step is its own short unit of work.

Round trips (measured by `bench/pipeline.py`): the very first run of an enrollment (its
`pipeline_state` still NULL, claimed under the row lock, so exactly one run ever sees
that) skips the subscription search, since nothing can exist in Stripe for it yet; every
later run (Huey retry, reconciliation, a webhook resuming it) searches before creating.
When the payee already has a customer, the start and `customer` steps are one write.
The related rows a step reads (payee, plan, slot, teacher...) come in one query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from models import billing
from models import enrollment as enrollment_ops
from models.base import utcnow
from models.billing import Plan
from models.config import get_settings
from models.db import session_scope
from models.enrollment import PROVISIONAL
from models.errors import DomainError
from models.outbox import add_dead_letter, queue_admin_alert, queue_email
from workers.stripe_gateway import StripeGateway, TerminalStripeError

log = logging.getLogger(__name__)
ACTOR = "worker"


@dataclass
class Booking:
    """What the pipeline needs to know, read once at the start (plain values, no session)."""

    enrollment_id: int
    payee_id: int
    payee_email: str
    payee_name: str
    customer_id: str | None
    plan_id: int
    frequency: str
    amount_cents: int
    currency: str
    price_id: str | None
    lessons_left: int
    key: str
    payee_key: str
    first_attempt: bool = False  # no earlier run ever reached Stripe for this enrollment


def stable_key(kind: str, row_id: int, created_at) -> str:
    """The idempotency-key prefix of a row: `booking-12-20260101120000123456` (same on every retry)."""
    return f"{kind}-{row_id}-{created_at.strftime('%Y%m%d%H%M%S%f')}"


def _preload(session, enrollment, *, with_slot: bool) -> tuple:
    """The enrollment's student, payee and plan (and slot, teacher, instrument) in one query.

    The rows land in the session's identity map, so the domain functions' own
    `session.get()`s find them without SQL; the caller keeps the tuple referenced (the map
    holds rows weakly). Nothing is locked or changed; an empty tuple means a row is missing
    and the domain functions load (and fail) as they would have.
    """
    from sqlmodel import select

    from models.enrollment import Enrollment
    from models.people import Instrument, Payee, Student, Teacher
    from models.scheduling import Timeslot

    joins = [(Student, Student.id == Enrollment.student_id), (Payee, Payee.id == Student.payee_id)]
    if enrollment.plan_id is not None:
        joins.append((Plan, Plan.id == Enrollment.plan_id))
    if with_slot:
        joins += [(Timeslot, Timeslot.id == Enrollment.timeslot_id), (Teacher, Teacher.id == Timeslot.teacher_id),
                  (Instrument, Instrument.id == Enrollment.instrument_id)]
    statement = select(*(model for model, _ in joins)).select_from(Enrollment)
    for model, condition in joins:
        statement = statement.join(model, condition)
    return tuple(session.exec(statement.where(Enrollment.id == enrollment.id)).first() or ())


def _load(enrollment_id: int) -> Booking | None:
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None or enrollment.status != PROVISIONAL:
            return None  # expired, cancelled, failed or already active: nothing to do
        if enrollment.plan_id is None:
            raise TerminalStripeError("the enrollment has no plan to bill")
        first_attempt = enrollment.pipeline_state is None
        related = _preload(session, enrollment, with_slot=False)  # noqa: F841 (kept for the identity map)
        plan = session.get(Plan, enrollment.plan_id)
        payee = enrollment_ops.payee_of(session, enrollment)
        lessons_left = 0
        if plan.frequency == "semester":
            today = utcnow().astimezone(get_settings().tz).date()
            try:
                lessons_left = len(enrollment_ops.lesson_dates(session, enrollment, first=today))
            except DomainError as error:
                raise TerminalStripeError(f"cannot price the semester: {error.detail}") from None
        # A payee with a customer already has the `customer` step done: one write for both.
        enrollment_ops.touch_pipeline(session, enrollment, "customer" if payee.stripe_customer_id else "started")
        return Booking(
            enrollment_id=enrollment.id, payee_id=payee.id, payee_email=payee.email, payee_name=payee.name,
            customer_id=payee.stripe_customer_id, plan_id=plan.id, frequency=plan.frequency,
            amount_cents=plan.amount_cents, currency=plan.currency, price_id=plan.stripe_price_id,
            lessons_left=lessons_left, key=stable_key("booking", enrollment.id, enrollment.created_at),
            payee_key=stable_key("payee", payee.id, payee.created_at), first_attempt=first_attempt,
        )


def _progress(enrollment_id: int, state: str) -> bool:
    """Record a step; False when the enrollment stopped being provisional meanwhile."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None or enrollment.status != PROVISIONAL:
            return False
        enrollment_ops.touch_pipeline(session, enrollment, state)
        return True


def ensure_customer(gateway: StripeGateway, *, payee_id: int, email: str, name: str, customer_id: str | None,
                    key: str) -> str:
    """The payee's Stripe customer, created once (idempotency key per payee) and remembered."""
    if customer_id:
        return customer_id
    customer = gateway.create_customer(email=email, name=name, payee_id=payee_id, key=key)
    with session_scope() as session:
        return billing.link_stripe_customer(session, payee_id, customer["id"], actor=ACTOR)


def ensure_plan_price(gateway: StripeGateway, plan_id: int) -> str:
    """The plan's Stripe Price, creating Product and Price for a plan that has none (seeded plans)."""
    with session_scope(write=False) as session:
        plan = session.get(Plan, plan_id)
        if plan.stripe_price_id:
            return plan.stripe_price_id
        name, frequency, amount, currency, product_id = plan.name, plan.frequency, plan.amount_cents, plan.currency, plan.stripe_product_id
        key = stable_key("plan", plan.id, plan.created_at)
    product_id = product_id or gateway.create_product(plan_id=plan_id, name=name, key=key)["id"]
    price = gateway.create_price(plan_id=plan_id, product_id=product_id, amount_cents=amount, currency=currency,
                                 frequency=frequency, key=key)
    with session_scope() as session:
        plan = session.get(Plan, plan_id)
        return billing.set_plan_stripe_ids(session, plan, product_id=product_id, price_id=price["id"], actor=ACTOR).stripe_price_id


def _wait_for_card(enrollment_id: int, payee_email: str) -> None:
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None or enrollment.status != PROVISIONAL:
            return
        enrollment_ops.touch_pipeline(session, enrollment, "awaiting_payment_method")
        queue_email(
            session, template="provisional_notice", recipient=payee_email,
            context=enrollment_ops.email_context(session, enrollment), dedupe_key=f"provisional_notice:{enrollment_id}",
        )


def _undo_late_charge(gateway: StripeGateway, enrollment_id: int, *, subscription_id: str | None,
                      payment_intent_id: str | None, invoice_id: str | None = None) -> None:
    """The hold ended (expired, cancelled) while Stripe was charging: take the charge back
    (a subscription's first invoice is paid on creation: cancelling alone would keep the money)."""
    if subscription_id:
        gateway.cancel_subscription(subscription_id)
        if invoice_id:
            gateway.refund_invoice(invoice_id)
    if payment_intent_id:
        gateway.refund_payment_intent(payment_intent_id, key=f"{payment_intent_id}-refund")
    with session_scope() as session:
        queue_admin_alert(
            session, subject=f"Booking {enrollment_id} was charged after its hold ended",
            message=f"The charge ({subscription_id or payment_intent_id}) was undone automatically; no action needed.",
            dedupe_key=f"late_charge:{enrollment_id}", admins=get_settings().admin_emails,
        )


def run_booking(enrollment_id: int) -> str:
    """Drive one provisional enrollment as far as it can go; returns where it stopped.

    `active`, `awaiting_payment_method`, `skipped` (not provisional) or `undone` (the hold
    ended while charging). Raises TransientStripeError to be retried, TerminalStripeError
    when the booking cannot succeed (the task turns it into `failed`).
    """
    booking = _load(enrollment_id)
    if booking is None:
        return "skipped"
    gateway = StripeGateway()
    customer_id = ensure_customer(
        gateway, payee_id=booking.payee_id, email=booking.payee_email, name=booking.payee_name,
        customer_id=booking.customer_id, key=booking.payee_key,
    )
    if customer_id != booking.customer_id and not _progress(enrollment_id, "customer"):
        return "skipped"  # (a customer that existed at the start was recorded by `_load`)
    payment_method = gateway.default_payment_method(customer_id)
    if payment_method is None:
        _wait_for_card(enrollment_id, booking.payee_email)
        return "awaiting_payment_method"
    if not _progress(enrollment_id, "charging"):
        return "skipped"

    subscription_id = payment_intent_id = invoice_id = None
    if booking.frequency in ("weekly", "monthly"):
        price_id = booking.price_id or ensure_plan_price(gateway, booking.plan_id)
        existing = None if booking.first_attempt else gateway.find_subscription(customer_id, enrollment_id)
        subscription = existing or gateway.create_subscription(
            enrollment_id=enrollment_id, customer_id=customer_id, price_id=price_id, key=booking.key,
        )
        subscription_id = subscription["id"]
        if subscription.get("status") not in ("active", "trialing"):
            gateway.cancel_subscription(subscription_id)
            raise TerminalStripeError(f"the first payment was declined (subscription {subscription.get('status')})")
        latest = subscription.get("latest_invoice")
        invoice_id = latest.get("id") if isinstance(latest, dict) else latest
    else:
        if booking.lessons_left <= 0:
            raise TerminalStripeError("no billable lesson left in the semester")
        # The amount follows the calendar (a day passing, a closure added), and with it the
        # charge's key: a re-run looks for the earlier charge instead of trusting the key.
        existing = None if booking.first_attempt else gateway.find_payment(customer_id, enrollment_id)
        intent = existing or gateway.charge_off_session(
            enrollment_id=enrollment_id, customer_id=customer_id, payment_method_id=payment_method,
            amount_cents=booking.amount_cents * booking.lessons_left, currency=booking.currency, key=booking.key,
        )
        payment_intent_id = intent["id"]
        if intent.get("status") != "succeeded":
            raise TerminalStripeError(f"the payment needs the parent's action (payment {intent.get('status')})")

    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        related = enrollment is not None and enrollment.status == PROVISIONAL and \
            _preload(session, enrollment, with_slot=True)  # noqa: F841 (for the confirmation's context)
        activated = enrollment is not None and enrollment_ops.activate_enrollment(
            session, enrollment, actor=ACTOR, subscription_id=subscription_id,
            payment_intent_id=payment_intent_id, invoice_id=invoice_id,
        )
        already = enrollment is not None and enrollment.status != PROVISIONAL and (
            (subscription_id and enrollment.stripe_subscription_id == subscription_id)
            or (payment_intent_id and enrollment.stripe_payment_intent_id == payment_intent_id)
        )
    if activated or already:
        return "active"
    _undo_late_charge(gateway, enrollment_id, subscription_id=subscription_id, payment_intent_id=payment_intent_id,
                      invoice_id=invoice_id)
    return "undone"


def fail_booking(enrollment_id: int, reason: str, *, kind: str = "book_enrollment") -> bool:
    """A booking that cannot succeed: `failed` with the reason, a dead letter, the admin alerted
    (by `fail_enrollment`). False when the enrollment was no longer provisional."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None:
            return False
        failed = enrollment_ops.fail_enrollment(session, enrollment, reason=reason, actor=ACTOR)
        if failed:
            add_dead_letter(session, kind=kind, payload={"enrollment_id": enrollment_id}, error=reason)
        return failed


def undo_orphan_charges(enrollment_id: int) -> str:
    """A booking that ended (hold expired, failed) without recording a charge: a worker may have
    died after Stripe took it, or Stripe's answer was lost. Any live subscription or taken
    payment carrying this enrollment's id and not linked to it is cancelled and refunded.
    `undone` or `clean`; `skipped` while the enrollment is still live (the pipeline owns it)."""
    from models.enrollment import LIVE_STATUSES, Enrollment

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None or enrollment.status in LIVE_STATUSES:
            return "skipped"
        customer_id = enrollment_ops.payee_of(session, enrollment).stripe_customer_id
        linked = {enrollment.stripe_subscription_id, enrollment.stripe_payment_intent_id} - {None}
    if not customer_id:
        return "clean"
    gateway = StripeGateway()
    subscription = gateway.find_subscription(customer_id, enrollment_id)
    payment = gateway.find_payment(customer_id, enrollment_id)
    subscription = subscription if subscription and subscription["id"] not in linked else None
    payment = payment if payment and payment["id"] not in linked else None
    if subscription is None and payment is None:
        return "clean"
    latest = (subscription or {}).get("latest_invoice")
    _undo_late_charge(
        gateway, enrollment_id, subscription_id=subscription and subscription["id"],
        payment_intent_id=payment and payment["id"], invoice_id=latest.get("id") if isinstance(latest, dict) else latest,
    )
    return "undone"


def resume_bookings_of_customer(customer_id: str) -> list[int]:
    """Provisional enrollments of the customer's payee (waiting for a card): ids to re-run."""
    from sqlmodel import select

    from models.people import Payee

    with session_scope(write=False) as session:
        payee = session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).first()
        if payee is None:
            return []
        return [enrollment.id for enrollment in enrollment_ops.awaiting_payment_method(session, payee.id)]

