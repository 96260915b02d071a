"""The admin's side of what the studio mirrors in Stripe: the price list (plans and their
Stripe Products/Prices) and the received webhook events, as plain rows; and reopening a
stored event so it is processed again (audited).

The tables and the operations the workers use live in `models.billing`; this module only
reads them for `studioctl plans` / `studioctl stripe` and holds the admin's replay.
"""

from __future__ import annotations

from sqlmodel import Session, select

from models.audit import change_audited
from models.billing import Plan, StripeEvent, get_stripe_event
from models.errors import NotFound


def _plan_row(plan: Plan) -> dict:
    return {
        "id": plan.id,
        "name": plan.name,
        "frequency": plan.frequency,
        "amount": f"{plan.amount:.2f}",
        "currency": plan.currency,
        "active": plan.active,
        "stripe_product_id": plan.stripe_product_id,
        "stripe_price_id": plan.stripe_price_id,
    }


def list_plans(session: Session) -> list[dict]:
    """Every plan in id order, with its amount in currency units (`"30.00"`) and Stripe ids."""
    return [_plan_row(plan) for plan in session.exec(select(Plan).order_by(Plan.id)).all()]


def plan_row(session: Session, *, plan_id: int) -> dict:
    """One plan as `list_plans` shows it, or NotFound."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"no plan {plan_id}", field="plan")
    return _plan_row(plan)


def list_stripe_events(
    session: Session, *, status: str | None = None, limit: int = 50, before_id: int | None = None
) -> list[dict]:
    """The newest `limit` stored Stripe events (of one `status`, when given; older than
    `before_id`, when given: the admin API's pages), newest first, without their payloads."""
    statement = select(StripeEvent).order_by(StripeEvent.id.desc()).limit(limit)
    if status:
        statement = statement.where(StripeEvent.status == status)
    if before_id is not None:
        statement = statement.where(StripeEvent.id < before_id)
    return [
        {
            "id": event.id,
            "stripe_event_id": event.stripe_event_id,
            "type": event.type,
            "status": event.status,
            "attempts": event.attempts,
            "error": event.error,
            "received_at": event.received_at,
            "processed_at": event.processed_at,
        }
        for event in session.exec(statement).all()
    ]


def reopen_stripe_event(session: Session, *, ref: str | int, actor: str) -> StripeEvent:
    """Put a stored event (local id or `evt_…`) back to `received` so its processing runs
    again — safe whatever its state, the handlers re-read Stripe. Audited every time (a
    replay is the admin's decision even when the event was still `received`); NotFound when
    there is no such event. The caller processes or enqueues it after commit."""
    event = get_stripe_event(session, ref)
    return change_audited(session, event, actor=actor, action="stripe_event.reopen", status="received")
