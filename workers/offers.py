"""Offering freed slots to the waiting list (issue 14): the task run after the commit that freed
a slot, and the periodic `offer_freed_slots`, the safety net a killed worker leaves nothing to.

Each slot is matched in its own unit of work (`models.offers.offer_slot`): two consumers matching
one slot at once make one offer (the slot's row lock and the database's date-range rule)."""

from __future__ import annotations

import logging

from models import offers
from models.db import session_scope
from workers.app import TASK_RETRIES, TASK_RETRY_BACKOFF, TASK_RETRY_DELAY, huey

log = logging.getLogger(__name__)
ACTOR = "worker"


def match_slot(timeslot_id: int) -> int | None:
    """Offer one slot to the earliest fitting entry; the offer's id, or None."""
    with session_scope() as session:
        offer = offers.offer_slot(session, timeslot_id, actor=ACTOR)
        return offer.id if offer is not None else None


@huey.task(retries=TASK_RETRIES, retry_delay=TASK_RETRY_DELAY, retry_backoff=TASK_RETRY_BACKOFF)
def offer_freed_slot(timeslot_id: int) -> int | None:
    """After the commit that freed `timeslot_id`: offer it to the waiting list."""
    return match_slot(timeslot_id)


def enqueue_offer(timeslot_id: int) -> None:
    """The dispatcher `models.offers` calls after a commit that freed a slot: the task is
    enqueued only when an open entry may take the slot (most freed slots have nobody waiting)."""
    with session_scope(write=False) as session:
        waiting = offers.anyone_waiting(session, timeslot_id)
    if waiting:
        offer_freed_slot(timeslot_id)


def offer_freed_slots() -> dict:
    """Offers past their expiry lapse; every bookable slot someone waits for is offered."""
    with session_scope() as session:
        lapsed = [offer.id for offer in offers.lapse_offers(session, actor=ACTOR)]
    with session_scope(write=False) as session:
        slot_ids = offers.candidate_slots(session)
    offered = []
    for slot_id in slot_ids:
        try:
            offer_id = match_slot(slot_id)
        except Exception:  # one slot's failure never stops the others; the next run tries again
            log.exception("offering timeslot %s failed", slot_id)
            continue
        if offer_id is not None:
            offered.append(offer_id)
    return {"lapsed": lapsed, "offered": offered}
