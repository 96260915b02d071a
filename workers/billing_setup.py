"""The Stripe objects a booking bills against, made once: the payee's customer, a plan's
Product and Price (`ensure_plan_price` for a plan that has none, `create_plan` for a new one).
"""

from __future__ import annotations

import uuid

from models import billing
from models.billing import Plan
from models.db import session_scope
from workers.pipeline_steps import ACTOR, stable_key
from workers.stripe_gateway import StripeGateway


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
