"""Money events seen in Stripe: disputes (chargebacks) and refunds, with the admin told.

Written by the Stripe webhook handlers (`workers/money_events.py`) from the object as Stripe
shows it *now*: each operation is an upsert keyed by the Stripe id, so a duplicate or
out-of-order event changes nothing, and every admin alert carries a dedupe key. What a
refund or a lost dispute means for the enrollment stays the admin's call.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit, snapshot
from models.base import utc_column, utcnow
from models.config import get_settings
from models.db import is_postgres
from models.outbox import queue_admin_alert
from models.people import Payee

DISPUTE_STATUSES = (
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
    "prevented",
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


def _locked_by_stripe_id(session: Session, model, column, stripe_id: str):
    """The row of `model` whose `column` is `stripe_id`, locked for this unit of work (or None)."""
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
    payee = session.get(Payee, payee_id) if payee_id else None
    if payee is None:
        return f"an unknown Stripe customer ({customer_id or 'none'})"
    return f"{payee.name} ({payee.email})"


def _local_time(moment: datetime | None) -> str:
    if moment is None:
        return "no deadline given"
    settings = get_settings()
    return f"{moment.astimezone(settings.tz):%Y-%m-%d %H:%M %Z} ({settings.STUDIO_TIMEZONE})"


def record_dispute(
    session: Session,
    *,
    stripe_dispute_id: str,
    charge_id: str | None,
    payment_intent_id: str | None,
    payee_id: int | None,
    enrollment_id: int | None,
    amount_cents: int,
    currency: str,
    reason: str | None,
    status: str,
    evidence_due_by: datetime | None,
    customer_id: str | None = None,
    actor: str,
) -> Dispute:
    """Record a chargeback as Stripe shows it now (insert or update by its Stripe id) and tell
    the admin: once when it is first seen open (family, amount, evidence deadline in the
    studio's zone), once when it is seen decided (the outcome). A dispute first seen already
    decided gets only the second alert. `customer_id` only names an unknown family."""
    closed = status in DISPUTE_CLOSED
    existing = _locked_by_stripe_id(session, Dispute, Dispute.stripe_dispute_id, stripe_dispute_id)
    values = {
        "charge_id": charge_id,
        "payment_intent_id": payment_intent_id,
        "amount_cents": amount_cents,
        "currency": (currency or "").lower()[:3],
        "reason": reason,
        "status": status,
        "evidence_due_by": evidence_due_by,
        # What we learnt before is kept when a later read cannot tell (a customer deleted since).
        "payee_id": payee_id or (existing.payee_id if existing else None),
        "enrollment_id": enrollment_id or (existing.enrollment_id if existing else None),
        "closed_at": ((existing.closed_at if existing else None) or utcnow()) if closed else None,
    }
    dispute, created = _upsert(
        session, Dispute, Dispute.stripe_dispute_id, stripe_dispute_id, values, actor=actor, action="dispute"
    )
    family = _family(session, dispute.payee_id, customer_id)
    amount = format_money(dispute.amount_cents, dispute.currency)
    about = f"charge {charge_id or '?'}" + (f", enrollment {dispute.enrollment_id}" if dispute.enrollment_id else "")
    if created and not closed:
        queue_admin_alert(
            session,
            subject=f"Dispute opened: {amount} from {family}",
            message=f"{family} disputed {amount} ({about}; reason: {reason or 'not given'}; Stripe status {status}). "
            f"Evidence is due by {_local_time(evidence_due_by)}: respond in the Stripe dashboard "
            f"(dispute {stripe_dispute_id}).",
            dedupe_key=f"dispute_opened:{stripe_dispute_id}",
        )
    if closed:
        outcome = _DISPUTE_OUTCOMES.get(status, status)
        queue_admin_alert(
            session,
            subject=f"Dispute {status.replace('_', ' ')}: {amount} from {family}",
            message=f"The dispute of {amount} by {family} ({about}; reason: {reason or 'not given'}) is {outcome}. "
            f"Stripe dispute {stripe_dispute_id}.",
            dedupe_key=f"dispute_closed:{stripe_dispute_id}",
        )
    return dispute


def record_refund(
    session: Session,
    *,
    stripe_refund_id: str,
    charge_id: str | None,
    payment_intent_id: str | None,
    payee_id: int | None,
    enrollment_id: int | None,
    amount_cents: int,
    currency: str,
    status: str | None,
    reason: str | None,
    ours: bool,
    customer_id: str | None = None,
    actor: str,
) -> StripeRefund:
    """Record a refund as Stripe shows it now (insert or update by its Stripe id). A refund
    the studio's code did not make (`ours` False: made in the Stripe dashboard) is told to the
    admin once; a refund that failed is told once too, whoever made it (the family still
    paid). Nothing else changes: what a refund means for the enrollment is the admin's call."""
    existing = _locked_by_stripe_id(session, StripeRefund, StripeRefund.stripe_refund_id, stripe_refund_id)
    values = {
        "charge_id": charge_id,
        "payment_intent_id": payment_intent_id,
        "amount_cents": amount_cents,
        "currency": (currency or "").lower()[:3],
        "status": status,
        "reason": reason,
        "payee_id": payee_id or (existing.payee_id if existing else None),
        "enrollment_id": enrollment_id or (existing.enrollment_id if existing else None),
    }
    refund, _ = _upsert(
        session, StripeRefund, StripeRefund.stripe_refund_id, stripe_refund_id, values, actor=actor, action="stripe_refund"
    )
    family = _family(session, refund.payee_id, customer_id)
    amount = format_money(refund.amount_cents, refund.currency)
    about = f"charge {charge_id or '?'}" + (f", enrollment {refund.enrollment_id}" if refund.enrollment_id else "")
    if not ours:
        queue_admin_alert(
            session,
            subject=f"Refund made in Stripe: {amount} to {family}",
            message=f"A refund of {amount} to {family} ({about}; reason: {reason or 'not given'}; status {status}) was "
            f"made outside the studio's system (the Stripe dashboard). The enrollment is unchanged: cancel "
            f"it if the family is leaving. Stripe refund {stripe_refund_id}.",
            dedupe_key=f"stripe_refund:{stripe_refund_id}",
        )
    if status == "failed":
        queue_admin_alert(
            session,
            subject=f"Refund failed: {amount} to {family}",
            message=f"Stripe could not give {amount} back to {family} ({about}); the family still paid. "
            f"Stripe refund {stripe_refund_id}.",
            dedupe_key=f"stripe_refund_failed:{stripe_refund_id}",
        )
    return refund


def _money_rows(session: Session, model, statement) -> list[dict]:
    rows = []
    for row, payee in session.exec(statement.outerjoin(Payee, Payee.id == model.payee_id)).all():
        view = snapshot(row)
        view |= {
            "amount": format_money(row.amount_cents, row.currency),
            "payee": payee.name if payee else None,
            "payee_email": payee.email if payee else None,
        }
        rows.append(view)
    return rows


def list_disputes(session: Session, *, open_only: bool = False) -> list[dict]:
    """Disputes seen in Stripe, newest first, with the family's name and email (`open_only`:
    not decided yet, the ones needing evidence)."""
    statement = select(Dispute, Payee).order_by(Dispute.created_at.desc(), Dispute.id.desc())
    if open_only:
        statement = statement.where(Dispute.status.not_in(DISPUTE_CLOSED))
    return _money_rows(session, Dispute, statement)


def list_stripe_refunds(session: Session) -> list[dict]:
    """Refunds seen in Stripe, newest first, with the family's name and email."""
    return _money_rows(
        session, StripeRefund, select(StripeRefund, Payee).order_by(StripeRefund.created_at.desc(), StripeRefund.id.desc())
    )
