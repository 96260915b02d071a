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
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from models import billing, logs, sibling_discount
from models import enrollment as enrollment_ops
from models.billing import Plan
from models.clock import studio_today
from models.db import session_scope
from models.enrollment import ACTION_REQUIRED, HOLD_STATUSES, PROVISIONAL
from models.errors import DomainError
from models.outbox import add_dead_letter, queue_admin_alert, queue_email
from models.payment_action import PaymentAction, await_payment_action
from workers import metrics
from workers.stripe_gateway import AuthenticationRequired, StripeGateway, StripeGatewayError, TerminalStripeError
from workers.stripe_shapes import object_id, payment_client_secret

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
    discount_percent: int = 0  # the sibling discount it is billed with (models.sibling_discount)
    status: str = PROVISIONAL
    subscription_id: str | None = None
    payment_intent_id: str | None = None
    invoice_id: str | None = None


def stable_key(kind: str, row_id: int, created_at) -> str:
    """The idempotency-key prefix of a row: `booking-12-20260101120000123456` (same on every retry)."""
    return f"{kind}-{row_id}-{created_at.strftime('%Y%m%d%H%M%S%f')}"


def payee_key(payee) -> str:
    """The key prefix of a payee's Stripe customer: a new one once a customer was deleted
    (`-c1`...), since Stripe replays the deleted customer for the old key."""
    key = stable_key("payee", payee.id, payee.created_at)
    return f"{key}-c{payee.stripe_customer_generation}" if payee.stripe_customer_generation else key


PRELOADED = "preloaded_rows"


def preload(session, enrollment, *, with_slot: bool) -> None:
    """Load the enrollment's student, payee and plan (and slot, teacher, instrument) in one
    query, for the domain functions of this unit of work to find without SQL.

    They read related rows with `session.get()`, which answers from the session's identity
    map; the map holds rows weakly, so the rows are also kept in `session.info` for the unit
    of work's life (`tests/test_pipeline_queries.py` counts the statements this saves).
    Nothing is locked or changed; a missing row is simply not preloaded, and the domain
    functions load (and fail) as they would have.
    """
    from sqlmodel import select

    from models.enrollment import Enrollment
    from models.people import Instrument, Payee, Student, Teacher
    from models.scheduling import Timeslot

    joins: list[tuple[Any, Any]] = [(Student, Student.id == Enrollment.student_id), (Payee, Payee.id == Student.payee_id)]
    if enrollment.plan_id is not None:
        joins.append((Plan, Plan.id == Enrollment.plan_id))
    if with_slot:
        joins += [
            (Timeslot, Timeslot.id == Enrollment.timeslot_id),
            (Teacher, Teacher.id == Timeslot.teacher_id),
            (Instrument, Instrument.id == Enrollment.instrument_id),
        ]
    statement: Any = select(*(model for model, _ in joins)).select_from(Enrollment)
    for model, condition in joins:
        statement = statement.join(model, condition)
    rows = session.exec(statement.where(Enrollment.id == enrollment.id)).first()
    session.info.setdefault(PRELOADED, []).append(tuple(rows or ()))


@contextmanager
def step(name: str, enrollment_id: int) -> Iterator[None]:
    """One step of a booking: the lines logged inside carry `enrollment_id`, and the step logs one
    `booking.step` event (step, outcome, duration) and is measured, failed or not."""
    started = time.perf_counter()
    with logs.context(enrollment_id=enrollment_id):
        try:
            yield
        except Exception as error:
            seconds = time.perf_counter() - started
            metrics.PIPELINE_STEP_DURATION.labels(name).observe(seconds)
            metrics.PIPELINE_STEP_FAILURES.labels(name, type(error).__name__).inc()
            logs.event(
                log,
                "booking.step",
                level=logging.WARNING,
                step=name,
                outcome="failed",
                error=type(error).__name__,
                duration_ms=round(seconds * 1000, 1),
            )
            raise
        seconds = time.perf_counter() - started
        metrics.PIPELINE_STEP_DURATION.labels(name).observe(seconds)
        logs.event(log, "booking.step", step=name, outcome="ok", duration_ms=round(seconds * 1000, 1))


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


def ensure_customer(
    gateway: StripeGateway, *, payee_id: int, email: str, name: str, customer_id: str | None, key: str, look_first: bool = False
) -> str:
    """The payee's Stripe customer, created once (idempotency key per payee) and remembered.
    `look_first`: an earlier run may have created it without hearing back: find it by email and
    our metadata before creating."""
    if customer_id:
        return customer_id
    customer = (gateway.find_customer(email=email, payee_id=payee_id) if look_first else None) or gateway.create_customer(
        email=email, name=name, payee_id=payee_id, key=key
    )
    with session_scope() as session:
        return billing.link_stripe_customer(session, payee_id, customer["id"], actor=ACTOR)


def ensure_plan_price(gateway: StripeGateway, plan_id: int) -> str:
    """The plan's Stripe Price, creating Product and Price for a plan that has none (seeded plans)."""
    with session_scope(write=False) as session:
        plan = session.get(Plan, plan_id)
        if plan.stripe_price_id:
            return plan.stripe_price_id
        name, frequency, amount, currency, product_id = (
            plan.name,
            plan.frequency,
            plan.amount_cents,
            plan.currency,
            plan.stripe_product_id,
        )
        key = stable_key("plan", plan.id, plan.created_at)
    product_id = product_id or gateway.create_product(plan_id=plan_id, name=name, key=key)["id"]
    price = gateway.create_price(
        plan_id=plan_id, product_id=product_id, amount_cents=amount, currency=currency, frequency=frequency, key=key
    )
    with session_scope() as session:
        plan = session.get(Plan, plan_id)
        return billing.set_plan_stripe_ids(
            session, plan, product_id=product_id, price_id=price["id"], actor=ACTOR
        ).stripe_price_id


def create_plan(gateway: StripeGateway, *, name: str, frequency: str, amount_cents: int, currency: str, actor: str) -> int:
    """A new plan with its Stripe Product and Price, as one unit: checked first, then made in
    Stripe, and only then saved (with their ids) — a Stripe failure leaves no plan behind. (A
    database failure after Stripe answered leaves an unused Product/Price there, never charged.)
    The key is new per call: an admin running the command again after a failure starts afresh."""
    billing.check_plan(name=name, frequency=frequency, amount_cents=amount_cents, currency=currency)
    key = f"plan-new-{uuid.uuid4().hex}"
    product_id = gateway.create_product(plan_id=None, name=name, key=key)["id"]
    price = gateway.create_price(
        plan_id=None, product_id=product_id, amount_cents=amount_cents, currency=currency, frequency=frequency, key=key
    )
    with session_scope() as session:
        plan = billing.add_plan(
            session,
            name=name,
            frequency=frequency,
            amount_cents=amount_cents,
            currency=currency,
            actor=actor,
            stripe_product_id=product_id,
            stripe_price_id=price["id"],
        )
        return plan.id


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


def _undo_late_charge(
    gateway: StripeGateway,
    enrollment_id: int,
    *,
    subscription_id: str | None,
    payment_intent_id: str | None,
    invoice_id: str | None = None,
) -> bool:
    """The hold ended (expired, cancelled, failed) while Stripe was charging or waiting for the
    parent: cancel what Stripe holds and take back what it took (a subscription's first invoice
    is paid on creation: cancelling alone would keep the money). The admin is told when money
    was given back. True when something was refunded."""
    refunded = False
    if subscription_id:
        gateway.cancel_subscription(subscription_id)
    if invoice_id:  # unpaid: voided (its hosted page too); paid: refunded
        if gateway.void_open_invoice(invoice_id).get("status") == "paid":
            refunded = gateway.refund_invoice(invoice_id) is not None
    if payment_intent_id:
        intent = gateway.cancel_payment_intent(payment_intent_id)
        if intent.get("status") == "succeeded":
            gateway.refund_payment_intent(payment_intent_id, key=f"{payment_intent_id}-refund")
            refunded = True
    if refunded:
        with session_scope() as session:
            queue_admin_alert(
                session,
                subject=f"Booking {enrollment_id} was charged after its hold ended",
                message=f"The charge ({subscription_id or payment_intent_id}) was refunded automatically; no action needed.",
                dedupe_key=f"late_charge:{enrollment_id}",
            )
    return refunded


def _next_key_generation(enrollment_id: int) -> None:
    """A create was answered 5xx: the next run looks the object up and, when Stripe has none,
    creates it under a new idempotency key (the old one replays the stored 500)."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is not None:
            enrollment.stripe_key_generation += 1
            enrollment_ops.touch_pipeline(session, enrollment, enrollment.pipeline_state or "started")


def awaiting_parent(intent: dict | None) -> bool:
    """A PaymentIntent waiting for the parent's 3-D Secure check: `requires_action` (on-session,
    localstripe), or left `requires_payment_method` by an off-session `authentication_required`."""
    if not intent:
        return False
    if intent.get("status") in ("requires_action", "requires_confirmation"):
        return True
    error = intent.get("last_payment_error") or {}
    return intent.get("status") == "requires_payment_method" and "authentication_required" in (
        error.get("code"),
        error.get("decline_code"),
    )


def _await_parent(
    gateway: StripeGateway, enrollment_id: int, *, intent: dict, invoice: dict | None = None, subscription_id: str | None = None
) -> str:
    """The first payment waits for the parent: `action_required`, with what the app and the email
    need. If the hold ended meanwhile, what Stripe holds is cancelled instead."""
    secret = payment_client_secret(invoice, intent)
    if not secret:
        raise TerminalStripeError(f"payment {intent.get('id')} needs authentication but has no client secret")
    action = PaymentAction(client_secret=secret, url=(invoice or {}).get("hosted_invoice_url"))
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        waiting = enrollment is not None and enrollment.status == ACTION_REQUIRED
        if enrollment is not None and enrollment.status == PROVISIONAL:
            waiting = await_payment_action(
                session,
                enrollment,
                actor=ACTOR,
                action=action,
                subscription_id=subscription_id,
                invoice_id=(invoice or {}).get("id"),
                payment_intent_id=intent.get("id"),
            )
    if waiting:
        return "action_required"
    # The hold ended meanwhile: nothing may be paid on it. A subscription's invoice is voided
    # (its PaymentIntent is the invoice's, Stripe refuses to cancel it alone).
    _undo_late_charge(
        gateway,
        enrollment_id,
        subscription_id=subscription_id,
        invoice_id=(invoice or {}).get("id"),
        payment_intent_id=None if subscription_id else intent["id"],
    )
    return "undone"


def _subscription_outcome(gateway: StripeGateway, enrollment_id: int, subscription: dict) -> tuple[str, str | None, str | None]:
    """Where a (new or found) subscription stands: ("paid" | "waiting", invoice id, PaymentIntent id).
    A declined first payment cancels it and raises a terminal error."""
    invoice_id = object_id(subscription.get("latest_invoice"))
    if subscription.get("status") in ("active", "trialing"):
        return "paid", invoice_id, None
    if subscription.get("status") == "incomplete" and invoice_id:
        invoice, intent = gateway.first_payment(invoice_id)
        if awaiting_parent(intent):
            return (
                _await_parent(gateway, enrollment_id, intent=intent, invoice=invoice, subscription_id=subscription["id"]),
                invoice_id,
                intent["id"],
            )
    gateway.cancel_subscription(subscription["id"])
    raise TerminalStripeError(f"the first payment was declined (subscription {subscription.get('status')})")


def _check_parent_action(gateway: StripeGateway, booking: Booking) -> str:
    """An `action_required` booking: has the parent's check passed in Stripe? Then activate.
    Otherwise it keeps waiting (a failed check may be retried by the parent; the window's end
    expires it)."""
    subscription_id, payment_intent_id, invoice_id = booking.subscription_id, None, booking.invoice_id
    if booking.subscription_id:
        subscription = gateway.retrieve_subscription(booking.subscription_id)
        if subscription.get("status") in ("incomplete_expired", "canceled"):
            # Stripe gave up on the first invoice (23 hours) or it was cancelled: nothing can be
            # paid any more, the slot is freed now rather than at the window's end.
            return _expire_now(gateway, booking, reason=f"subscription {subscription.get('status')}")
        if subscription.get("status") not in ("active", "trialing"):
            return "action_required"
    elif booking.payment_intent_id:
        intent = gateway.retrieve_payment_intent(booking.payment_intent_id)
        if intent.get("status") == "canceled":
            return _expire_now(gateway, booking, reason="payment cancelled")
        if intent.get("status") != "succeeded":
            return "action_required"
        payment_intent_id = intent["id"]
    else:
        raise TerminalStripeError("the booking waits for a payment it has no record of")
    return _activate_or_undo(
        gateway,
        booking.enrollment_id,
        subscription_id=subscription_id,
        payment_intent_id=payment_intent_id,
        invoice_id=invoice_id,
    )


def _expire_now(gateway: StripeGateway, booking: Booking, *, reason: str) -> str:
    """The payment the booking waits for can no longer succeed: the hold expires now (parent
    and admin told, as at the window's end) and what Stripe holds is undone."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, booking.enrollment_id)
        expired = enrollment is not None and enrollment_ops.expire_hold(session, enrollment, actor=ACTOR)
    if expired:
        log.info("booking %s expired early: %s", booking.enrollment_id, reason)
        _undo_late_charge(
            gateway,
            booking.enrollment_id,
            subscription_id=booking.subscription_id,
            invoice_id=booking.invoice_id,
            payment_intent_id=None if booking.subscription_id else booking.payment_intent_id,
        )
    return "expired" if expired else "skipped"


def _activate_or_undo(
    gateway: StripeGateway,
    enrollment_id: int,
    *,
    subscription_id: str | None,
    payment_intent_id: str | None,
    invoice_id: str | None,
) -> str:
    """Billing is set up: `active` (with the confirmation), or — the hold ended while Stripe was
    charging — the charge is taken back (`undone`)."""
    with session_scope() as session:
        enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
        if enrollment is not None and enrollment.status in HOLD_STATUSES:
            preload(session, enrollment, with_slot=True)  # the confirmation's context
        activated = enrollment is not None and enrollment_ops.activate_enrollment(
            session,
            enrollment,
            actor=ACTOR,
            subscription_id=subscription_id,
            payment_intent_id=payment_intent_id,
            invoice_id=invoice_id,
        )
        already = (
            enrollment is not None
            and enrollment.status not in HOLD_STATUSES
            and enrollment.pipeline_state == "done"
            and (
                (subscription_id and enrollment.stripe_subscription_id == subscription_id)
                or (payment_intent_id and enrollment.stripe_payment_intent_id == payment_intent_id)
            )
        )
    if activated or already:
        return "active"
    _undo_late_charge(
        gateway, enrollment_id, subscription_id=subscription_id, payment_intent_id=payment_intent_id, invoice_id=invoice_id
    )
    return "undone"


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
            return _check_parent_action(gateway, booking)
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
            outcome, invoice_id, _ = _subscription_outcome(gateway, enrollment_id, subscription)
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
                return _await_parent(gateway, enrollment_id, intent=intent)
            if intent.get("status") != "succeeded":
                raise TerminalStripeError(f"the payment was not taken (payment {intent.get('status')})")
    with step("activate", enrollment_id):
        return _activate_or_undo(
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


def undo_orphan_charges(enrollment_id: int) -> str:
    """A booking that ended (hold expired, failed, cancelled before it was billed) while Stripe
    may still hold something for it: a worker may have died after Stripe charged, Stripe's answer
    was lost, or a payment waits for a 3-D Secure check nobody will do now. Every live
    subscription, taken or waiting payment carrying this enrollment's id is cancelled and what
    was taken refunded — the ones linked to it too, since it was never billed. For a booking
    that was billed and then cancelled only unlinked ones count (its own subscription is
    `cancel_subscription`'s). `undone` or `clean`; `skipped` while the enrollment is live (the
    pipeline owns it)."""
    from models.enrollment import CANCELLED, EXPIRED, FAILED, LIVE_STATUSES, Enrollment

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None or enrollment.status in LIVE_STATUSES:
            return "skipped"
        customer_id = enrollment_ops.payee_of(session, enrollment).stripe_customer_id
        never_billed = enrollment.status in (EXPIRED, FAILED) or (
            enrollment.status == CANCELLED and enrollment.pipeline_state != "done"
        )
        linked = set() if never_billed else {enrollment.stripe_subscription_id, enrollment.stripe_payment_intent_id} - {None}
    if not customer_id:
        return "clean"
    gateway = StripeGateway()
    subscription = gateway.find_subscription(customer_id, enrollment_id)
    payment = gateway.find_payment(
        customer_id,
        enrollment_id,
        statuses=("succeeded", "processing", "requires_capture")
        + (("requires_action", "requires_confirmation", "requires_payment_method") if never_billed else ()),
    )
    subscription = subscription if subscription and subscription["id"] not in linked else None
    payment = payment if payment and payment["id"] not in linked else None
    if subscription is None and payment is None:
        return "clean"
    latest = (subscription or {}).get("latest_invoice")
    _undo_late_charge(
        gateway,
        enrollment_id,
        subscription_id=subscription["id"] if subscription else None,
        payment_intent_id=payment["id"] if payment else None,
        invoice_id=object_id(latest),
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
