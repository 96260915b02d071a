"""Billing records: plans (mirrored as Stripe Products/Prices), received Stripe events, and
the family's Stripe customer and default card (disputes and refunds: `models.money_events`).

Stripe is the source of truth for money; these rows are our local memory of it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit, snapshot
from models.base import enum_check, json_column, utc_column, utcnow
from models.errors import Invalid, NotFound
from models.people import Payee

FREQUENCIES = ("weekly", "monthly", "semester")
EVENT_STATUSES = ("received", "processed", "failed", "ignored")
NAME_LENGTH = 80
MAX_AMOUNT_CENTS = 99_999_999  # Stripe's largest unit_amount (8 digits): 999,999.99

# ISO 4217 List One (SIX, the maintenance agency; as published in 2025): the currencies in
# use, lowercase as Stripe writes them. Funds, precious metals and the testing and "no
# currency" codes (BOV, CLF, XDR, XAU, XTS, XXX...) are left out: nothing is priced in them.
# ANG and BGN stay while they are being replaced (by XCG and the euro).
ISO_4217 = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp
    byn bzd cad cdf chf clp cny cop crc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp
    gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr
    kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk
    mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar
    sbd scr sdg sek sgd shp sle sos srd ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs
    uah ugx usd uyu uzs ved ves vnd vuv wst xaf xcd xcg xof xpf yer zar zmw zwg
    """.split()
)


class Plan(SQLModel, table=True):
    """A price list entry. weekly/monthly: a recurring Stripe price per period; semester: a price
    per lesson, charged once for the semester's remaining billable lessons."""

    __table_args__ = (
        enum_check("frequency", FREQUENCIES, "frequency_known"),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.CheckConstraint("length(currency) = 3", name="currency_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=NAME_LENGTH)
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

    def discounted_label(self, percent: int) -> str | None:
        """The amount with `percent` off, as an email shows it (`108.00 USD`); None without a discount."""
        if not percent:
            return None
        return f"{Decimal(self.amount_cents - discount_cents(self.amount_cents, percent)) / 100:.2f} {self.currency.upper()}"


def discount_cents(amount_cents: int, percent: int) -> int:
    """What `percent` off `amount_cents` takes away, rounded to the nearest cent (half up), as
    Stripe rounds a percent-off coupon on an invoice."""
    return (amount_cents * percent + 50) // 100


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


# Stripe's zero-decimal and three-decimal currencies (docs: "Zero-decimal currencies",
# "Three-decimal currencies"); every other ISO 4217 code here has two.
ZERO_DECIMAL_CURRENCIES = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())
TWO_DECIMAL_CURRENCIES = ISO_4217 - ZERO_DECIMAL_CURRENCIES - THREE_DECIMAL_CURRENCIES


def parse_amount(text: str | float | Decimal) -> int:
    """`30.00` → 3000 cents; Invalid when negative, malformed or finer than a cent."""
    try:
        # Decimal() takes '1_000' and other scripts' digits ('١٢'): an amount is ASCII without '_'.
        if isinstance(text, str) and (not text.isascii() or "_" in text):
            raise InvalidOperation
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise Invalid(f"{text!r} is not an amount", field="amount") from None
    if not value.is_finite() or value < 0:
        raise Invalid(f"{text!r} is not a non-negative amount", field="amount")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise Invalid(f"{text!r} has more than two decimals", field="amount")
    return int(cents)


def check_plan(*, name: str, frequency: str, amount_cents: int, currency: str) -> None:
    """Refuse a plan that cannot be priced, before anything (a row, a Stripe Price) is made:
    an unknown frequency, an amount of zero or less (or past what Stripe takes), a currency
    that is not ISO 4217, a name longer than its column."""
    if len(name.strip()) > NAME_LENGTH:
        raise Invalid(f"a plan's name has at most {NAME_LENGTH} characters", field="name")
    if frequency not in FREQUENCIES:
        raise Invalid(f"frequency must be one of {', '.join(FREQUENCIES)}", field="frequency")
    if amount_cents <= 0:
        raise Invalid("amount must be more than 0", field="amount")
    if amount_cents > MAX_AMOUNT_CENTS:
        raise Invalid(f"amount must be at most {Decimal(MAX_AMOUNT_CENTS) / 100} (Stripe's limit)", field="amount")
    if currency not in ISO_4217:
        raise Invalid(f"{currency!r} is not an ISO 4217 currency code (e.g. usd, eur, gbp)", field="currency")
    if currency not in TWO_DECIMAL_CURRENCIES:
        # Amounts are kept and shown in hundredths everywhere (plans, charges, emails, exports):
        # 3000 JPY would be charged as 300,000. Refused until money carries its exponent.
        raise Invalid(
            f"{currency.upper()} does not have two decimals (Stripe: zero- or three-decimal); "
            "plans are priced in two-decimal currencies only (e.g. usd, eur, gbp)",
            field="currency",
        )


def add_plan(
    session: Session,
    *,
    name: str,
    frequency: str,
    amount_cents: int,
    currency: str,
    actor: str,
    stripe_product_id: str | None = None,
    stripe_price_id: str | None = None,
) -> Plan:
    """Add a plan, with its Stripe ids when they were made first (else the workers' gateway
    fills them in on first use)."""
    check_plan(name=name, frequency=frequency, amount_cents=amount_cents, currency=currency)
    plan = Plan(
        name=name.strip() or frequency,
        frequency=frequency,
        amount_cents=amount_cents,
        currency=currency,
        stripe_product_id=stripe_product_id,
        stripe_price_id=stripe_price_id,
    )
    session.add(plan)
    session.flush()
    record_audit(session, actor=actor, action="plan.add", entity=plan, after=snapshot(plan))
    return plan


# Built once (every booking names its plan by frequency).
_NEWEST_ACTIVE_PLAN = (
    select(Plan)
    .where(Plan.frequency == sa.bindparam("frequency", type_=sa.String), Plan.active.is_(True))
    .order_by(Plan.id.desc())
    .limit(1)
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
    return list(
        session.exec(
            select(StripeEvent.id)
            .where(StripeEvent.status == "received", StripeEvent.received_at <= older_than)
            .order_by(StripeEvent.id)
        ).all()
    )


def get_stripe_event(session: Session, ref: str | int) -> StripeEvent:
    """An event by local id or Stripe event id."""
    text = str(ref).strip()
    event = (
        session.get(StripeEvent, int(text))
        if text.isdigit()
        else session.exec(select(StripeEvent).where(StripeEvent.stripe_event_id == text)).first()
    )
    if event is None:
        raise NotFound(f"no Stripe event {ref!r}", field="event")
    return event


def set_plan_stripe_ids(session: Session, plan: Plan, *, product_id: str, price_id: str, actor: str) -> Plan:
    """Store the Stripe Product/Price mirroring a plan (first writer wins; the ids never change)."""
    if plan.stripe_price_id:
        return plan
    return change_audited(
        session, plan, actor=actor, action="plan.stripe", stripe_product_id=product_id, stripe_price_id=price_id
    )


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


# The family's Stripe customer and default card ---------------------------------------
#
# Written by the pipeline and the Stripe webhook handlers from the object as Stripe shows it
# *now*: a duplicate or out-of-order event changes nothing.


def link_stripe_customer(session: Session, payee_id: int, customer_id: str, *, actor: str) -> str:
    """Remember a payee's Stripe customer; returns the id in force (an earlier link wins)."""
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


def spend_customer_key(session: Session, payee_id: int) -> None:
    """Stripe answered a customer create with a 5xx, which it stores under the idempotency key:
    the payee's next create uses a new key (after looking the customer up first)."""
    payee = session.get(Payee, payee_id)
    if payee is not None:
        payee.stripe_customer_generation += 1
        session.add(payee)
        session.flush()


def payee_by_customer(session: Session, customer_id: str | None) -> Payee | None:
    """The family whose Stripe customer is `customer_id`, or None."""
    if not customer_id:
        return None
    return session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).first()


def remember_default_card(session: Session, payee_id: int, payment_method_id: str | None, *, actor: str = "worker") -> bool:
    """Note the card Stripe now bills the family by default (None: no card); audited. False
    when it was already the one noted (or the payee is gone)."""
    payee = session.get(Payee, payee_id)
    if payee is None or payee.stripe_payment_method_id == payment_method_id:
        return False
    change_audited(
        session, payee, actor=actor, action="payee.default_card", stripe_payment_method_id=payment_method_id, updated_at=utcnow()
    )
    return True


def forget_default_card(session: Session, *, payment_method_id: str, actor: str) -> list[int]:
    """A card was detached in Stripe: every payee noting it as their default forgets it
    (audited). Returns their ids (none: nothing to do, e.g. a replayed event)."""
    payees = session.exec(select(Payee).where(Payee.stripe_payment_method_id == payment_method_id)).all()
    for payee in payees:
        change_audited(
            session, payee, actor=actor, action="payee.default_card_detached", stripe_payment_method_id=None, updated_at=utcnow()
        )
    return [payee.id for payee in payees]
