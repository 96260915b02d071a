"""Process wiring: what each entry point (the CLI's root group, `create_app`, the consumer)
installs before doing any work. Cheap to import: Huey and the tasks load on the first send."""

from __future__ import annotations

import logging

from models import dispatch

# Loggers that write HTTP traffic at DEBUG: Stripe's SDK logs every request's parameters and
# every response body (client secrets `pi_..._secret_...`, emails, card details), urllib3 and
# httpx/httpcore their request lines. Debug logging (`studioctl worker -v`, `huey_consumer -v`)
# sets the root logger's level, never these: they stay at INFO, Stripe's at WARNING — the
# gateway logs each call itself (`stripe.request`: method, path without the query string, key,
# status, duration), where the SDK's INFO summaries carry the URL with a list's filters (emails).
HTTP_BODY_LOGGERS = ("stripe", "urllib3", "httpx", "httpcore")
QUIET_AT = {"stripe": logging.WARNING}


def _enqueue_send(email_id: int) -> None:
    from workers.tasks import send_email

    send_email(email_id)


def _enqueue_sms(sms_id: int) -> None:
    from workers.tasks import send_sms

    send_sms(sms_id)


def _enqueue_offer(timeslot_id: int) -> None:
    from workers.offers import enqueue_offer

    enqueue_offer(timeslot_id)


def _enqueue_rebalance(enrollment_id: int) -> None:
    from models.sibling_discount import discount_percent
    from workers.sibling_discounts import rebalance_sibling_discounts

    if discount_percent():  # off (0): nothing is created, moved or removed, so no task per booking either
        rebalance_sibling_discounts(enrollment_id)


def _apply_time_off(enrollment_id: int) -> None:
    from workers.time_off import enqueue_if_teacher_away

    enqueue_if_teacher_away(enrollment_id)


def _watch_freed_slots() -> None:
    from models import offers, sibling_discount, time_off

    offers.set_slot_dispatcher(_enqueue_offer)
    sibling_discount.set_discount_dispatcher(_enqueue_rebalance)
    time_off.set_booking_dispatcher(_apply_time_off)


def keep_http_bodies_out_of_logs() -> None:
    """Hold the loggers that write request and response bodies at INFO or above (Stripe's at WARNING)."""
    for name in HTTP_BODY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, QUIET_AT.get(name, logging.INFO)))


def install() -> None:
    """Emails queued in a unit of work are enqueued for sending once it commits; no HTTP body
    reaches a log, whatever the log level."""
    dispatch.set_email_dispatcher(_enqueue_send)
    # A freed slot is offered to the waiting list after commit, and an enrollment becoming active or
    # ending moves its family's sibling discount: `models.offers` and `models.sibling_discount`
    # watch flushes once imported, which loads the ORM; so before the first unit of work, not for a `--help`.
    # So does `models.time_off`: a booking that starts taking place gets its teacher's time off.
    dispatch.set_before_first_unit(_watch_freed_slots)
    dispatch.set_sms_dispatcher(_enqueue_sms)
    keep_http_bodies_out_of_logs()
