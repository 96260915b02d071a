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

Here: the run (`run_booking`) and its local steps. What the steps share (`Booking`, keys,
`preload`, `step`) is `workers/pipeline_steps.py`; the customer and the plans' Prices
`workers/billing_setup.py`; the 3-D Secure wait `workers/payment_authentication.py`; activation
and taking back late or orphan charges `workers/booking_activation.py`.
"""

from __future__ import annotations

from models import billing, sibling_discount
from models import enrollment as enrollment_ops
from models.billing import Plan
from models.clock import studio_today
from models.db import session_scope
from models.enrollment import ACTION_REQUIRED, HOLD_STATUSES, PROVISIONAL
from models.errors import DomainError
from models.outbox import add_dead_letter, queue_email
from workers.billing_setup import ensure_customer, ensure_plan_price
from workers.booking_activation import activate_or_undo
from workers.payment_authentication import await_parent, awaiting_parent, check_parent_action, subscription_outcome
from workers.pipeline_steps import ACTOR, Booking, payee_key, preload, stable_key, step
from workers.stripe_gateway import AuthenticationRequired, StripeGateway, StripeGatewayError, TerminalStripeError


def _with_generation(key: str, generation: int) -> str:
    """A step's idempotency key; after an ambiguous answer a new one (`-g1`, `-g2`...)."""
    return f"{key}-g{generation}" if generation else key


def _load(enrollment_id: int) -> Booking | None:
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None or enrollment.status not in HOLD_STATUSES:
            return None  # expired, cancelled, failed or already active: nothing to do
        if enrollment.status == ACTION_REQUIRED:  # waiting for the parent: only Stripe's answer is read
            return Booking(
                enrollment_id=enrollment.id,
                payee_id=0,
                payee_email="",
                payee_name="",
                customer_id=None,
                plan_id=enrollment.plan_id or 0,
                frequency="",
                amount_cents=0,
                currency="",
                price_id=None,
                lessons_left=0,
                key="",
                payee_key="",
                status=ACTION_REQUIRED,
                subscription_id=enrollment.stripe_subscription_id,
                payment_intent_id=enrollment.stripe_payment_intent_id,
                invoice_id=enrollment.stripe_invoice_id,
            )
        if enrollment.plan_id is None:
            raise TerminalStripeError("the enrollment has no plan to bill")
        first_attempt = enrollment.pipeline_state is None
        preload(session, enrollment, with_slot=False)
        plan = session.get(Plan, enrollment.plan_id)
        payee = enrollment_ops.payee_of(session, enrollment)
        lessons_left = 0
        if plan.frequency == "semester":
            today = studio_today()
            try:
                lessons_left = len(enrollment_ops.lesson_dates(session, enrollment, first=today))
            except DomainError as error:
                raise TerminalStripeError(f"cannot price the semester: {error.detail}") from None
        # A payee with a customer already has the `customer` step done: one write for both.
        enrollment_ops.touch_pipeline(session, enrollment, "customer" if payee.stripe_customer_id else "started")
        discount = sibling_discount.booking_discount(session, enrollment, actor=ACTOR)
        return Booking(
            enrollment_id=enrollment.id,
            payee_id=payee.id,
            payee_email=payee.email,
            payee_name=payee.name,
            customer_id=payee.stripe_customer_id,
            plan_id=plan.id,
            frequency=plan.frequency,
            amount_cents=plan.amount_cents,
            currency=plan.currency,
            price_id=plan.stripe_price_id,
            lessons_left=lessons_left,
            key=_with_generation(stable_key("booking", enrollment.id, enrollment.created_at), enrollment.stripe_key_generation),
            payee_key=_with_generation(payee_key(payee), enrollment.stripe_key_generation),
            first_attempt=first_attempt,
            discount_percent=discount,
        )


def _progress(enrollment_id: int, state: str) -> bool:
    """Record a step; False when the enrollment stopped being provisional meanwhile."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None or enrollment.status != PROVISIONAL:
            return False
        enrollment_ops.touch_pipeline(session, enrollment, state)
        return True


def _wait_for_card(enrollment_id: int, payee_email: str) -> None:
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is None or enrollment.status != PROVISIONAL:
            return
        enrollment_ops.touch_pipeline(session, enrollment, "awaiting_payment_method")
        queue_email(
            session,
            template="provisional_notice",
            recipient=payee_email,
            context=enrollment_ops.email_context(session, enrollment),
            dedupe_key=f"provisional_notice:{enrollment_id}",
        )


def _next_key_generation(enrollment_id: int) -> None:
    """A create was answered 5xx: the next run looks the object up and, when Stripe has none,
    creates it under a new idempotency key (the old one replays the stored 500)."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is not None:
            enrollment.stripe_key_generation += 1
            enrollment_ops.touch_pipeline(session, enrollment, enrollment.pipeline_state or "started")


def _create_or_note_ambiguity(enrollment_id: int, create):
    """Run a Stripe create. Every run after the first looks the object up before creating; a
    5xx answer (stored by Stripe under the key) also moves the enrollment to a new key
    generation. A timeout keeps the key: a retry with it is replayed or told 409."""
    try:
        return create()
    except StripeGatewayError as error:
        if error.key_spent:
            _next_key_generation(enrollment_id)
        raise


def sibling_coupon(gateway: StripeGateway, percent: int) -> str | None:
    """The Stripe coupon of a sibling discount of `percent` (made once), or None for none."""
    if not percent:
        return None
    return gateway.ensure_coupon(
        coupon_id=sibling_discount.coupon_id(percent), percent=percent, name=f"Sibling discount {percent}%"
    )


def semester_charge(booking: Booking) -> int:
    """The semester's one charge: every billable lesson left, less the sibling discount."""
    amount = booking.amount_cents * booking.lessons_left
    return amount - billing.discount_cents(amount, booking.discount_percent)


def run_booking(enrollment_id: int) -> str:
    """Drive one held enrollment as far as it can go; returns where it stopped.

    `active`, `awaiting_payment_method`, `action_required` (the bank wants the parent to
    authenticate the first payment), `skipped` (not a hold) or `undone` (the hold ended while
    charging). Raises TransientStripeError to be retried, TerminalStripeError when the booking
    cannot succeed (the task turns it into `failed`).
    """
    with step("load", enrollment_id):
        booking = _load(enrollment_id)
    if booking is None:
        return "skipped"
    gateway = StripeGateway()
    if booking.status == ACTION_REQUIRED:
        with step("check_payment_action", enrollment_id):
            return check_parent_action(gateway, booking)
    with step("customer", enrollment_id):
        customer_id = _create_or_note_ambiguity(
            enrollment_id,
            lambda: ensure_customer(
                gateway,
                payee_id=booking.payee_id,
                email=booking.payee_email,
                name=booking.payee_name,
                customer_id=booking.customer_id,
                key=booking.payee_key,
                look_first=not booking.first_attempt,
            ),
        )
        if customer_id != booking.customer_id and not _progress(enrollment_id, "customer"):
            return "skipped"  # (a customer that existed at the start was recorded by `_load`)
    with step("payment_method", enrollment_id):
        payment_method = gateway.default_payment_method(customer_id)
        if payment_method is None:
            _wait_for_card(enrollment_id, booking.payee_email)
            return "awaiting_payment_method"
        if not _progress(enrollment_id, "charging"):
            return "skipped"

    subscription_id = payment_intent_id = invoice_id = None
    if booking.frequency in ("weekly", "monthly"):
        with step("subscription", enrollment_id):
            price_id = booking.price_id or ensure_plan_price(gateway, booking.plan_id)
            existing = None if booking.first_attempt else gateway.find_subscription(customer_id, enrollment_id)
            coupon_id = sibling_coupon(gateway, booking.discount_percent) if not existing else None
            subscription = existing or _create_or_note_ambiguity(
                enrollment_id,
                lambda: gateway.create_subscription(
                    enrollment_id=enrollment_id, customer_id=customer_id, price_id=price_id, key=booking.key, coupon_id=coupon_id
                ),
            )
            subscription_id = subscription["id"]
            outcome, invoice_id, _ = subscription_outcome(gateway, enrollment_id, subscription)
            if outcome != "paid":
                return outcome
    else:
        with step("charge", enrollment_id):
            if booking.lessons_left <= 0:
                raise TerminalStripeError("no billable lesson left in the semester")
            # The amount follows the calendar (a day passing, a closure added), and with it the
            # charge's key: a re-run looks for the earlier charge instead of trusting the key.
            existing = (
                None
                if booking.first_attempt
                else gateway.find_payment(
                    customer_id,
                    enrollment_id,
                    statuses=("succeeded", "processing", "requires_capture", "requires_action", "requires_payment_method"),
                )
            )
            if existing and existing.get("status") == "requires_payment_method" and not awaiting_parent(existing):
                existing = None  # an earlier decline: charging again is this run's job
            try:
                intent = existing or _create_or_note_ambiguity(
                    enrollment_id,
                    lambda: gateway.charge_off_session(
                        enrollment_id=enrollment_id,
                        customer_id=customer_id,
                        payment_method_id=payment_method,
                        amount_cents=semester_charge(booking),
                        currency=booking.currency,
                        key=booking.key,
                    ),
                )
            except AuthenticationRequired as error:
                intent = (
                    error.payment_intent
                    or gateway.find_payment(customer_id, enrollment_id, statuses=("requires_payment_method", "requires_action"))
                    or {}
                )
                if not intent.get("id"):
                    raise TerminalStripeError(f"the payment needs authentication, but Stripe named no payment: {error}") from None
            payment_intent_id = intent["id"]
            if awaiting_parent(intent):
                return await_parent(gateway, enrollment_id, intent=intent)
            if intent.get("status") != "succeeded":
                raise TerminalStripeError(f"the payment was not taken (payment {intent.get('status')})")
    with step("activate", enrollment_id):
        return activate_or_undo(
            gateway, enrollment_id, subscription_id=subscription_id, payment_intent_id=payment_intent_id, invoice_id=invoice_id
        )


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


def resume_bookings_of_customer(customer_id: str) -> list[int]:
    """Provisional enrollments of the customer's payee (waiting for a card): ids to re-run."""
    from sqlmodel import select

    from models.people import Payee

    with session_scope(write=False) as session:
        payee = session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).first()
        if payee is None:
            return []
        return [enrollment.id for enrollment in enrollment_ops.awaiting_payment_method(session, payee.id)]
