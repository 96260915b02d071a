"""Billing records: plans (mirrored as Stripe Products/Prices) and received Stripe events.

Stripe is the source of truth for money; these rows are our local memory of it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit, snapshot
from models.base import enum_check, json_column, utc_column, utcnow
from models.errors import Conflict, Invalid, NotFound

FREQUENCIES = ("weekly", "monthly", "semester")
EVENT_STATUSES = ("received", "processed", "failed", "ignored")


class Plan(SQLModel, table=True):
    """A price list entry. weekly/monthly: a recurring Stripe price per period; semester: a price
    per lesson, charged once for the semester's remaining billable lessons."""

    __table_args__ = (
        enum_check("frequency", FREQUENCIES, "frequency_known"),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.CheckConstraint("length(currency) = 3", name="currency_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
    frequency: str = Field(max_length=16)
    amount_cents: int
    currency: str = Field(default="usd", max_length=3)
    stripe_product_id: str | None = Field(default=None, max_length=64)
    stripe_price_id: str | None = Field(default=None, max_length=64)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))

    @property
    def amount(self) -> Decimal:
        """The amount in currency units."""
        return Decimal(self.amount_cents) / 100


class StripeEvent(SQLModel, table=True):
    """A webhook event, stored once by its Stripe id (replays are recognised and ignored)."""

    __tablename__ = "stripe_event"
    __table_args__ = (enum_check("status", EVENT_STATUSES, "status_known"),)

    id: int | None = Field(default=None, primary_key=True)
    stripe_event_id: str = Field(max_length=255, sa_column_kwargs={"unique": True})
    type: str = Field(max_length=80, index=True)
    payload: dict = Field(sa_column=json_column(nullable=False))
    status: str = Field(default="received", max_length=16)
    error: str | None = None
    attempts: int = Field(default=0)
    received_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False, index=True))
    processed_at: datetime | None = Field(default=None, sa_column=utc_column())


DISPUTE_STATUSES = (
    "warning_needs_response", "warning_under_review", "warning_closed", "needs_response", "under_review",
    "won", "lost", "prevented",
)


class Dispute(SQLModel, table=True):
    """A chargeback a family's bank opened against one of our charges (`charge.dispute.*`)."""

    id: int | None = Field(default=None, primary_key=True)
    stripe_dispute_id: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    charge_id: str | None = Field(default=None, max_length=64)
    payment_intent_id: str | None = Field(default=None, max_length=64)
    payee_id: int | None = Field(default=None, foreign_key="payee.id", ondelete="SET NULL")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", ondelete="SET NULL")
    amount_cents: int
    currency: str = Field(max_length=3)
    reason: str | None = Field(default=None, max_length=64)
    # Stripe's status verbatim (its list grows; unknown values are stored as they come).
    status: str = Field(max_length=32)
    evidence_due_by: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=utc_column())


class StripeRefund(SQLModel, table=True):
    """A refund seen in Stripe: ours (late-charge undo) or one made in the Stripe dashboard."""

    __tablename__ = "stripe_refund"

    id: int | None = Field(default=None, primary_key=True)
    stripe_refund_id: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    charge_id: str | None = Field(default=None, max_length=64)
    payment_intent_id: str | None = Field(default=None, max_length=64)
    payee_id: int | None = Field(default=None, foreign_key="payee.id", ondelete="SET NULL")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", ondelete="SET NULL")
    amount_cents: int
    currency: str = Field(max_length=3)
    status: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


def parse_amount(text: str | float | Decimal) -> int:
    """`30.00` → 3000 cents; Invalid when negative, malformed or finer than a cent."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise Invalid(f"{text!r} is not an amount", field="amount") from None
    if not value.is_finite() or value < 0:
        raise Invalid(f"{text!r} is not a non-negative amount", field="amount")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise Invalid(f"{text!r} has more than two decimals", field="amount")
    return int(cents)


def add_plan(session: Session, *, name: str, frequency: str, amount_cents: int, currency: str, actor: str) -> Plan:
    """Add a plan (Stripe ids are filled in by the workers' gateway)."""
    if frequency not in FREQUENCIES:
        raise Invalid(f"frequency must be one of {', '.join(FREQUENCIES)}", field="frequency")
    if amount_cents < 0:
        raise Invalid("amount must not be negative", field="amount")
    plan = Plan(name=name.strip() or frequency, frequency=frequency, amount_cents=amount_cents, currency=currency)
    session.add(plan)
    session.flush()
    record_audit(session, actor=actor, action="plan.add", entity=plan, after=snapshot(plan))
    return plan


# Built once (every booking names its plan by frequency).
_NEWEST_ACTIVE_PLAN = (
    select(Plan).where(Plan.frequency == sa.bindparam("frequency", type_=sa.String), Plan.active.is_(True))
    .order_by(Plan.id.desc()).limit(1)
)


def get_plan(session: Session, ref: str | int) -> Plan:
    """A plan by id, or the newest active plan of a frequency name."""
    text = str(ref).strip().lower()
    if text.isdigit():
        plan = session.get(Plan, int(text))
    else:
        if text not in FREQUENCIES:
            raise Invalid(f"plan must be an id or one of {', '.join(FREQUENCIES)}", field="plan")
        plan = session.execute(_NEWEST_ACTIVE_PLAN, {"frequency": text}).scalars().first()
    if plan is None:
        raise NotFound(f"no plan {ref!r}", field="plan")
    return plan


def record_stripe_event(session: Session, *, event_id: str, type: str, payload: dict) -> StripeEvent | None:
    """Store a webhook event once; None when this id was seen before (a replay)."""
    if session.exec(select(StripeEvent.id).where(StripeEvent.stripe_event_id == event_id)).first() is not None:
        return None
    event = StripeEvent(stripe_event_id=event_id, type=type, payload=payload)
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except sa.exc.IntegrityError:  # a concurrent delivery of the same event won the race
        return None
    return event


def stuck_stripe_events(session: Session, *, older_than: datetime) -> list[int]:
    """Ids of events still `received` since before `older_than` (their processing task was lost)."""
    return list(session.exec(
        select(StripeEvent.id).where(StripeEvent.status == "received", StripeEvent.received_at <= older_than)
        .order_by(StripeEvent.id)
    ).all())


def get_stripe_event(session: Session, ref: str | int) -> StripeEvent:
    """An event by local id or Stripe event id."""
    text = str(ref).strip()
    event = session.get(StripeEvent, int(text)) if text.isdigit() else session.exec(
        select(StripeEvent).where(StripeEvent.stripe_event_id == text)
    ).first()
    if event is None:
        raise NotFound(f"no Stripe event {ref!r}", field="event")
    return event


def ensure_plan_free_of(session: Session, plan: Plan) -> None:
    """Conflict if a plan may not be changed because live enrollments use it."""
    from models.enrollment import LIVE_STATUSES, Enrollment

    if session.exec(select(Enrollment.id).where(Enrollment.plan_id == plan.id, Enrollment.status.in_(LIVE_STATUSES))).first():
        raise Conflict(f"plan {plan.id} is used by live enrollments")


def set_plan_stripe_ids(session: Session, plan: Plan, *, product_id: str, price_id: str, actor: str) -> Plan:
    """Store the Stripe Product/Price mirroring a plan (first writer wins; the ids never change)."""
    if plan.stripe_price_id:
        return plan
    return change_audited(session, plan, actor=actor, action="plan.stripe",
                          stripe_product_id=product_id, stripe_price_id=price_id)


def link_stripe_customer(session: Session, payee_id: int, customer_id: str, *, actor: str) -> str:
    """Remember a payee's Stripe customer; returns the id in force (an earlier link wins)."""
    from models.people import Payee

    payee = session.get(Payee, payee_id)
    if payee is None:
        raise NotFound(f"no payee {payee_id}")
    if payee.stripe_customer_id:
        return payee.stripe_customer_id
    payee.stripe_customer_id = customer_id
    session.add(payee)
    session.flush()
    record_audit(session, actor=actor, action="payee.stripe_customer", entity=payee, after={"stripe_customer_id": customer_id})
    return customer_id


def finish_stripe_event(session: Session, event: StripeEvent, *, status: str, error: str | None = None) -> StripeEvent:
    """Record how processing an event ended: processed, ignored (nothing to do) or failed."""
    if status not in EVENT_STATUSES:
        raise Invalid(f"unknown event status {status!r}")
    event.status, event.error = status, (error or None) and error[:2000]
    event.attempts += 1
    event.processed_at = utcnow()
    session.add(event)
    session.flush()
    return event
