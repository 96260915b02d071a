"""Moving a family's sibling discount in Stripe (`models.sibling_discount`): run after the commit
in which one of its enrollments became active or stopped being live.

Safe to run any number of times, and at once: the family's ranking is read afresh, each
subscription is read from Stripe before it is changed (one already right is left alone), the
change's idempotency key counts the enrollment's discount changes (`discount_changes`, carried
with a subscription through a move), and the record of what Stripe applies is written under the
enrollment's lock only when it differs. A Stripe failure is raised (transient: Huey retries;
terminal: the task's dead letter and admin alert, `workers.tasks.RETRYABLE`).
"""

from __future__ import annotations

import logging

from models import outbox, sibling_discount
from models.base import utcnow
from models.db import session_scope
from models.enrollment import Enrollment, payee_of
from workers.app import TASK_RETRIES, TASK_RETRY_BACKOFF, TASK_RETRY_DELAY, huey

log = logging.getLogger(__name__)
ACTOR = "worker"


def rebalance_family(enrollment_id: int) -> dict:
    """Make the family of `enrollment_id` hold the rule: its full-price enrollment's subscription
    without our coupon, every other subscription with it. Returns what changed in Stripe
    (`updated`), what was recorded (`recorded`), and the semester enrollments left as they were
    charged (`kept`); `{"skipped": reason}` when there is nothing to do."""
    from workers.pipeline import sibling_coupon
    from workers.stripe_gateway import StripeGateway, TerminalStripeError, is_not_found

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None:
            return {"skipped": "no such enrollment"}
        targets = sibling_discount.family_targets(session, payee_of(session, enrollment).id)
    if not targets:
        return {"skipped": "the sibling discount is off" if not sibling_discount.discount_percent() else "no billed enrollment"}
    gateway = StripeGateway()
    updated, recorded, kept = [], [], []
    for target in targets:
        subscription_id = target.subscription_id
        if not target.movable or subscription_id is None:
            if target.percent != target.stored_percent:
                kept.append(target.enrollment_id)  # a semester paid in one charge keeps what it was charged
            continue
        coupon_id = sibling_coupon(gateway, target.percent)
        try:
            changed = gateway.set_subscription_coupon(
                subscription_id,
                coupon_id=coupon_id,
                ours=sibling_discount.COUPON_PREFIX,
                key=f"subscription-{subscription_id}-discount-{target.changes + 1}-{target.percent}",
            )
        except TerminalStripeError as error:
            if is_not_found(error):  # the subscription is gone: its enrollment ends by its own path
                log.warning("subscription %s of enrollment %s not found in Stripe", subscription_id, target.enrollment_id)
                continue
            raise
        if changed:
            updated.append(target.enrollment_id)
        with session_scope() as session:
            if sibling_discount.record_discount(
                session, target.enrollment_id, percent=target.percent, subscription_id=subscription_id, actor=ACTOR
            ):
                recorded.append(target.enrollment_id)
    return {"updated": updated, "recorded": recorded, "kept": kept}


@huey.task(retries=TASK_RETRIES, retry_delay=TASK_RETRY_DELAY, retry_backoff=TASK_RETRY_BACKOFF)
def rebalance_sibling_discounts(enrollment_id: int) -> str:
    """After the commit in which `enrollment_id` became active or stopped being live: its family's
    sibling discount moved in Stripe (`rebalance_family`). `updated`, `unchanged`, `skipped`, or
    `failed` (a terminal Stripe error: dead letter and admin alert, `workers.tasks.RETRYABLE`)."""
    from models import logs
    from workers.stripe_gateway import TerminalStripeError  # imported when run: the API enqueues, never calls Stripe

    with logs.context(enrollment_id=enrollment_id):
        try:
            outcome = rebalance_family(enrollment_id)
        except TerminalStripeError as error:
            discount_failed(enrollment_id, str(error))
            return "failed"
        logs.event(log, "sibling_discount.rebalance", **{key: value for key, value in outcome.items()})
    if "skipped" in outcome:
        return "skipped"
    return "updated" if outcome["updated"] or outcome["recorded"] else "unchanged"


def discount_failed(enrollment_id: int, error: str) -> None:
    """Moving the sibling discount of `enrollment_id`'s family failed for good (a terminal Stripe
    error, or the last retry): a dead letter of this task's kind (`studioctl deadletters retry`
    replays it) and one admin alert."""
    with session_scope() as session:
        outbox.add_dead_letter(
            session,
            kind=rebalance_sibling_discounts.task_class.__name__,  # the task's name, as `workers.tasks.task_name`
            payload={"enrollment_id": enrollment_id},
            error=error,
        )
        outbox.queue_admin_alert(
            session,
            subject=f"Moving the sibling discount of booking {enrollment_id}'s family failed",
            message=f"{error}. Until it is retried a subscription of the family may carry the sibling coupon when it "
            "should not, or miss it: retry the dead letter (`studioctl deadletters retry`) or set the coupons in the "
            "Stripe dashboard, then resolve it.",
            dedupe_key=f"discount_failed:{enrollment_id}:{utcnow():%Y-%m-%d}",  # news again another day
        )
