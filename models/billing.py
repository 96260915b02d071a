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


def spend_customer_key(session: Session, payee_id: int) -> None:
    """Stripe answered a customer create with a 5xx, which it stores under the idempotency key:
    the payee's next create uses a new key (after looking the customer up first)."""
    from models.people import Payee

    payee = session.get(Payee, payee_id)
    if payee is not None:
        payee.stripe_customer_generation += 1
        session.add(payee)
        session.flush()


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


# Money events: disputes, refunds, the family's Stripe customer and default card -------
#
# Written by the Stripe webhook handlers (`workers/money_events.py`) from the object as Stripe
# shows it *now*: each operation is an upsert keyed by the Stripe id, so a duplicate or
# out-of-order event changes nothing, and every admin alert carries a dedupe key.

# A dispute in one of these states is decided (`warning_closed`: an inquiry that ended
# without a chargeback; `prevented`: stopped before it became one).
DISPUTE_CLOSED = ("won", "lost", "warning_closed", "prevented")
_DISPUTE_OUTCOMES = {
    "won": "won: the money stays with the studio",
    "lost": "lost: the amount went back to the family's bank (and Stripe kept its dispute fee)",
    "warning_closed": "closed without becoming a chargeback",
    "prevented": "prevented: it never became a chargeback",
}
REFUND_SOURCE_STUDIO = "studio"  # `metadata.source` of the refunds our own code makes


def format_money(amount_cents: int, currency: str) -> str:
    """`13000, "usd"` → `130.00 USD` (two decimals: the studio bills in a two-decimal currency)."""
    return f"{Decimal(amount_cents or 0) / 100:.2f} {(currency or '').upper()}"


def payee_by_customer(session: Session, customer_id: str | None):
    """The family whose Stripe customer is `customer_id`, or None."""
    from models.people import Payee

    if not customer_id:
        return None
    return session.exec(select(Payee).where(Payee.stripe_customer_id == customer_id)).first()


def billed_enrollment_id(
    session: Session, *, enrollment_id: int | None = None, payment_intent_id: str | None = None,
    invoice_id: str | None = None, subscription_id: str | None = None,
) -> int | None:
    """The local enrollment a Stripe payment belongs to, from what Stripe named: our own
    `metadata.enrollment_id` (only when that enrollment exists here), else the enrollment
    linked to the PaymentIntent, the first invoice or the subscription. None when unknown."""
    from models.enrollment import Enrollment

    if enrollment_id is not None and session.get(Enrollment, enrollment_id) is not None:
        return enrollment_id
    for column, value in ((Enrollment.stripe_payment_intent_id, payment_intent_id),
                          (Enrollment.stripe_invoice_id, invoice_id),
                          (Enrollment.stripe_subscription_id, subscription_id)):
        if value:
            found = session.exec(select(Enrollment.id).where(column == value).order_by(Enrollment.id.desc())).first()
            if found is not None:
                return found
    return None


def _locked_by_stripe_id(session: Session, model, column, stripe_id: str):
    """The row of `model` whose `column` is `stripe_id`, locked for this unit of work (or None)."""
    from models.db import is_postgres

    statement = sa.select(model).where(column == stripe_id)
    if is_postgres(session):
        statement = statement.with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).first()


def _upsert(session: Session, model, column, stripe_id: str, values: dict, *, actor: str, action: str):
    """Insert the row for `stripe_id` or bring it in line with `values`; audited, and only when
    something changed. Returns (row, created). A concurrent insert of the same id (two events
    of one object processed at once) is caught and turned into an update."""
    row = _locked_by_stripe_id(session, model, column, stripe_id)
    if row is None:
        row = model(**{column.key: stripe_id}, **values)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except sa.exc.IntegrityError:
            row = _locked_by_stripe_id(session, model, column, stripe_id)
        else:
            record_audit(session, actor=actor, action=f"{action}.record", entity=row, after=snapshot(row))
            return row, True
    changes = {name: value for name, value in values.items() if getattr(row, name) != value}
    if changes:
        if hasattr(row, "updated_at"):
            changes["updated_at"] = utcnow()
        change_audited(session, row, actor=actor, action=f"{action}.update", **changes)
    return row, False


def _family(session: Session, payee_id: int | None, customer_id: str | None) -> str:
    from models.people import Payee

    payee = session.get(Payee, payee_id) if payee_id else None
    if payee is None:
        return f"an unknown Stripe customer ({customer_id or 'none'})"
    return f"{payee.name} ({payee.email})"


def _local_time(moment: datetime | None) -> str:
    from models.config import get_settings

    if moment is None:
        return "no deadline given"
    settings = get_settings()
    return f"{moment.astimezone(settings.tz):%Y-%m-%d %H:%M %Z} ({settings.STUDIO_TIMEZONE})"


def record_dispute(
    session: Session, *, stripe_dispute_id: str, charge_id: str | None, payment_intent_id: str | None,
    payee_id: int | None, enrollment_id: int | None, amount_cents: int, currency: str, reason: str | None,
    status: str, evidence_due_by: datetime | None, customer_id: str | None = None, actor: str,
) -> Dispute:
    """Record a chargeback as Stripe shows it now (insert or update by its Stripe id) and tell
    the admin: once when it is first seen open (family, amount, evidence deadline in the
    studio's zone), once when it is seen decided (the outcome). A dispute first seen already
    decided gets only the second alert. `customer_id` only names an unknown family."""
    from models.config import get_settings
    from models.outbox import queue_admin_alert

    closed = status in DISPUTE_CLOSED
    existing = _locked_by_stripe_id(session, Dispute, Dispute.stripe_dispute_id, stripe_dispute_id)
    values = {
        "charge_id": charge_id, "payment_intent_id": payment_intent_id, "amount_cents": amount_cents,
        "currency": (currency or "").lower()[:3], "reason": reason, "status": status, "evidence_due_by": evidence_due_by,
        # What we learnt before is kept when a later read cannot tell (a customer deleted since).
        "payee_id": payee_id or (existing.payee_id if existing else None),
        "enrollment_id": enrollment_id or (existing.enrollment_id if existing else None),
        "closed_at": ((existing.closed_at if existing else None) or utcnow()) if closed else None,
    }
    dispute, created = _upsert(session, Dispute, Dispute.stripe_dispute_id, stripe_dispute_id, values,
                               actor=actor, action="dispute")
    family = _family(session, dispute.payee_id, customer_id)
    amount = format_money(dispute.amount_cents, dispute.currency)
    about = f"charge {charge_id or '?'}" + (f", enrollment {dispute.enrollment_id}" if dispute.enrollment_id else "")
    admins = get_settings().admin_emails
    if created and not closed:
        queue_admin_alert(
            session, subject=f"Dispute opened: {amount} from {family}",
            message=f"{family} disputed {amount} ({about}; reason: {reason or 'not given'}; Stripe status {status}). "
                    f"Evidence is due by {_local_time(evidence_due_by)}: respond in the Stripe dashboard "
                    f"(dispute {stripe_dispute_id}).",
            dedupe_key=f"dispute_opened:{stripe_dispute_id}", admins=admins,
        )
    if closed:
        outcome = _DISPUTE_OUTCOMES.get(status, status)
        queue_admin_alert(
            session, subject=f"Dispute {status.replace('_', ' ')}: {amount} from {family}",
            message=f"The dispute of {amount} by {family} ({about}; reason: {reason or 'not given'}) is {outcome}. "
                    f"Stripe dispute {stripe_dispute_id}.",
            dedupe_key=f"dispute_closed:{stripe_dispute_id}", admins=admins,
        )
    return dispute


def record_refund(
    session: Session, *, stripe_refund_id: str, charge_id: str | None, payment_intent_id: str | None,
    payee_id: int | None, enrollment_id: int | None, amount_cents: int, currency: str, status: str | None,
    reason: str | None, ours: bool, customer_id: str | None = None, actor: str,
) -> StripeRefund:
    """Record a refund as Stripe shows it now (insert or update by its Stripe id). A refund
    the studio's code did not make (`ours` False: made in the Stripe dashboard) is told to the
    admin once; a refund that failed is told once too, whoever made it (the family still
    paid). Nothing else changes: what a refund means for the enrollment is the admin's call."""
    from models.config import get_settings
    from models.outbox import queue_admin_alert

    existing = _locked_by_stripe_id(session, StripeRefund, StripeRefund.stripe_refund_id, stripe_refund_id)
    values = {
        "charge_id": charge_id, "payment_intent_id": payment_intent_id, "amount_cents": amount_cents,
        "currency": (currency or "").lower()[:3], "status": status, "reason": reason,
        "payee_id": payee_id or (existing.payee_id if existing else None),
        "enrollment_id": enrollment_id or (existing.enrollment_id if existing else None),
    }
    refund, _ = _upsert(session, StripeRefund, StripeRefund.stripe_refund_id, stripe_refund_id, values,
                        actor=actor, action="stripe_refund")
    family = _family(session, refund.payee_id, customer_id)
    amount = format_money(refund.amount_cents, refund.currency)
    about = f"charge {charge_id or '?'}" + (f", enrollment {refund.enrollment_id}" if refund.enrollment_id else "")
    admins = get_settings().admin_emails
    if not ours:
        queue_admin_alert(
            session, subject=f"Refund made in Stripe: {amount} to {family}",
            message=f"A refund of {amount} to {family} ({about}; reason: {reason or 'not given'}; status {status}) was "
                    f"made outside the studio's system (the Stripe dashboard). The enrollment is unchanged: cancel "
                    f"it if the family is leaving. Stripe refund {stripe_refund_id}.",
            dedupe_key=f"stripe_refund:{stripe_refund_id}", admins=admins,
        )
    if status == "failed":
        queue_admin_alert(
            session, subject=f"Refund failed: {amount} to {family}",
            message=f"Stripe could not give {amount} back to {family} ({about}); the family still paid. "
                    f"Stripe refund {stripe_refund_id}.",
            dedupe_key=f"stripe_refund_failed:{stripe_refund_id}", admins=admins,
        )
    return refund


def _money_rows(session: Session, model, statement) -> list[dict]:
    from models.people import Payee

    rows = []
    for row, payee in session.exec(statement.outerjoin(Payee, Payee.id == model.payee_id)).all():
        view = snapshot(row)
        view |= {"amount": format_money(row.amount_cents, row.currency), "payee": payee.name if payee else None,
                 "payee_email": payee.email if payee else None}
        rows.append(view)
    return rows


def list_disputes(session: Session, *, open_only: bool = False) -> list[dict]:
    """Disputes seen in Stripe, newest first, with the family's name and email (`open_only`:
    not decided yet, the ones needing evidence)."""
    from models.people import Payee

    statement = select(Dispute, Payee).order_by(Dispute.created_at.desc(), Dispute.id.desc())
    if open_only:
        statement = statement.where(Dispute.status.not_in(DISPUTE_CLOSED))
    return _money_rows(session, Dispute, statement)


def list_stripe_refunds(session: Session) -> list[dict]:
    """Refunds seen in Stripe, newest first, with the family's name and email."""
    from models.people import Payee

    return _money_rows(session, StripeRefund, select(StripeRefund, Payee).order_by(
        StripeRefund.created_at.desc(), StripeRefund.id.desc()))


def remember_default_card(session: Session, payee_id: int, payment_method_id: str | None, *, actor: str = "worker") -> bool:
    """Note the card Stripe now bills the family by default (None: no card); audited. False
    when it was already the one noted (or the payee is gone)."""
    from models.people import Payee

    payee = session.get(Payee, payee_id)
    if payee is None or payee.stripe_payment_method_id == payment_method_id:
        return False
    change_audited(session, payee, actor=actor, action="payee.default_card",
                   stripe_payment_method_id=payment_method_id, updated_at=utcnow())
    return True


def forget_default_card(session: Session, *, payment_method_id: str, actor: str) -> list[int]:
    """A card was detached in Stripe: every payee noting it as their default forgets it
    (audited). Returns their ids (none: nothing to do, e.g. a replayed event)."""
    from models.people import Payee

    payees = session.exec(select(Payee).where(Payee.stripe_payment_method_id == payment_method_id)).all()
    for payee in payees:
        change_audited(session, payee, actor=actor, action="payee.default_card_detached",
                       stripe_payment_method_id=None, updated_at=utcnow())
    return [payee.id for payee in payees]


def forget_stripe_customer(session: Session, *, customer_id: str, actor: str):
    """The Stripe customer was deleted: its payee forgets it and its default card (audited),
    so the next booking or card setup makes a new customer. When the family had live
    enrollments billed by subscriptions (gone with the customer), the admin is told once.
    Returns the payee, or None when no payee had this customer."""
    from models.config import get_settings
    from models.enrollment import LIVE_STATUSES, Enrollment, Student
    from models.outbox import queue_admin_alert

    payee = payee_by_customer(session, customer_id)
    if payee is None:
        return None
    change_audited(session, payee, actor=actor, action="payee.stripe_customer_deleted",
                   stripe_customer_id=None, stripe_payment_method_id=None,
                   stripe_customer_generation=payee.stripe_customer_generation + 1, updated_at=utcnow())
    billed = session.exec(
        select(Enrollment.id).join(Student, Student.id == Enrollment.student_id)
        .where(Student.payee_id == payee.id, Enrollment.status.in_(LIVE_STATUSES), Enrollment.offline.is_(False),
               Enrollment.stripe_subscription_id.is_not(None))
        .order_by(Enrollment.id)
    ).all()
    if billed:
        ids = ", ".join(str(enrollment_id) for enrollment_id in billed)
        queue_admin_alert(
            session, subject=f"Stripe customer of {payee.name} deleted: {len(billed)} billed enrollment(s)",
            message=f"The Stripe customer {customer_id} of {payee.name} ({payee.email}) was deleted, and with it the "
                    f"subscriptions billing enrollment(s) {ids}: nothing will be charged for them any more. The "
                    f"family's next booking or card setup creates a new customer; re-enrol them or cancel the enrollments.",
            dedupe_key=f"customer_deleted:{customer_id}", admins=get_settings().admin_emails,
        )
    return payee
