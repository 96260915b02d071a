"""Periodic jobs: each selects by state and reuses the domain operations, so running one
twice (or from the CLI while the consumer runs it too) changes nothing more.

Each job is a plain function returning a JSON-safe summary, registered in `JOBS` (what
`studioctl jobs list | run NAME` shows and runs) and wrapped as a Huey periodic task under
`lock_task` (locks have no TTL: the consumer starts with --flush-locks).

Huey is at-most-once: a task popped by a consumer that dies is gone. `reconcile_bookings`,
`retry_stuck_emails` and `retry_stuck_events` are what make the system lose nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from huey import crontab

from models import attendance, changes, dunning, health, logs, makeup_news
from models import enrollment as enrollment_ops
from models.base import utcnow
from models.config import get_settings
from models.db import after_commit, session_scope
from models.outbox import queue_admin_alert, stuck_emails
from workers import metrics
from workers.app import huey
from workers.offers import offer_freed_slots

log = logging.getLogger(__name__)
ACTOR = "worker"
# When this process loaded its schedule: a consumer's start, as its heartbeat reports it.
PROCESS_STARTED = utcnow()


def expire_provisional_holds() -> dict:
    """Holds past their expiry → expired, slot free, parent and admin told. A booking waiting
    for a 3-D Secure check is first looked up in Stripe (the parent may have paid a moment ago,
    or the event may be lost): paid → active; Stripe unreachable → it waits for the next run."""
    from workers.pipeline import run_booking
    from workers.stripe_gateway import TransientStripeError
    from workers.tasks import undo_orphan_charges

    with session_scope(write=False) as session:
        waiting = enrollment_ops.holds_past_expiry(session, status=enrollment_ops.ACTION_REQUIRED)
    spare, paid = set(), []
    for enrollment_id in waiting:
        try:
            if run_booking(enrollment_id) == "active":
                paid.append(enrollment_id)
        except TransientStripeError as error:
            log.warning("hold %s: Stripe could not be asked (%s); expiry waits for the next run", enrollment_id, error)
            spare.add(enrollment_id)
        except Exception:  # a terminal answer: the hold expires below like any other
            log.exception("hold %s: checking its payment failed", enrollment_id)
    with session_scope() as session:
        expired = [
            enrollment.id for enrollment in enrollment_ops.expire_provisional_holds(session, actor=ACTOR, spare=frozenset(spare))
        ]
        # A worker may have died after Stripe charged (and stayed down past the hold): look.
        for enrollment_id in expired:
            after_commit(session, functools.partial(undo_orphan_charges, enrollment_id))
    summary: dict = {"expired": expired}
    if paid or spare:  # bookings waiting for a 3-D Secure check, found paid or not checked
        summary |= {"paid_in_time": paid, "unchecked": sorted(spare)}
    return summary


def reconcile_bookings(stale_after: timedelta | None = None) -> dict:
    """Provisional enrollments with no pipeline progress for a while get their booking task again
    (a worker killed mid-pipeline, an enqueue lost after commit, a webhook that never came)."""
    from workers.tasks import book_enrollment

    stale_after = stale_after if stale_after is not None else timedelta(seconds=get_settings().RECONCILE_STALE_SECONDS)
    with session_scope() as session:
        stale = enrollment_ops.stale_provisionals(session, older_than=stale_after)
        ids = []
        for row in stale:
            enrollment = enrollment_ops.lock_enrollment(session, row.id)
            if enrollment.status not in enrollment_ops.HOLD_STATUSES:  # action_required: Stripe is read again
                continue
            # Touching the row keeps the next run from piling up duplicates of this task.
            enrollment_ops.touch_pipeline(session, enrollment, "requeued")
            ids.append(enrollment.id)
            after_commit(session, functools.partial(book_enrollment, enrollment.id))
    return {"requeued": ids}


def reconcile_stripe() -> dict:
    """Compare active/past_due enrollments with their Stripe subscriptions; fix drift, report it."""
    from workers.stripe_gateway import StripeGateway, TerminalStripeError, is_not_found
    from workers.tasks import book_enrollment
    from workers.webhook_events import sync_subscription_state

    with session_scope(write=False) as session:
        billed = [(row.id, row.stripe_subscription_id) for row in dunning.billed_enrollments(session)]
    if not billed:
        return {"checked": 0, "drift": []}
    gateway = StripeGateway()
    drift: list[str] = []
    for enrollment_id, subscription_id in billed:
        try:
            subscription = gateway.retrieve_subscription(subscription_id)
        except TerminalStripeError as error:
            if not is_not_found(error):
                raise
            drift.append(f"enrollment {enrollment_id}: subscription {subscription_id} does not exist in Stripe")
            continue
        synced = sync_subscription_state(subscription, source="nightly reconciliation")
        drift += synced.changes
        for waiting_id in synced.resume:  # a first payment authenticated (or given up) while no event came
            book_enrollment(waiting_id)
    if drift:
        with session_scope() as session:
            queue_admin_alert(
                session,
                subject=f"Stripe reconciliation: {len(drift)} difference(s)",
                message="\n".join(drift),
                dedupe_key=f"reconcile_stripe:{utcnow():%Y%m%d%H%M}",
            )
    summary: dict = {"checked": len(billed), "drift": drift}
    rebalanced = _rebalance_sibling_discounts()
    return summary | ({"sibling_discounts_queued": rebalanced} if rebalanced else {})


def _rebalance_sibling_discounts() -> list[int]:
    """Families whose sibling discount breaks the rule (its task lost): rebalanced again."""
    from models.sibling_discount import families_out_of_balance
    from workers.sibling_discounts import rebalance_sibling_discounts

    with session_scope(write=False) as session:
        enrollment_ids = families_out_of_balance(session)
    for enrollment_id in enrollment_ids:
        rebalance_sibling_discounts(enrollment_id)
    return enrollment_ids


def enforce_dunning() -> dict:
    """past_due enrollments whose grace is over: paid meanwhile → active; else the subscription is
    cancelled in Stripe and locally, the slot freed, parent and admin told."""
    from workers.stripe_gateway import StripeGateway, TerminalStripeError, is_not_found

    with session_scope(write=False) as session:
        overdue = [(row.id, row.stripe_subscription_id) for row in dunning.dunning_overdue(session)]
    cancelled, recovered = [], []
    gateway = StripeGateway() if any(subscription for _, subscription in overdue) else None
    for enrollment_id, subscription_id in overdue:
        if subscription_id:
            try:
                subscription = gateway.retrieve_subscription(subscription_id)
            except TerminalStripeError as error:
                if not is_not_found(error):
                    raise
                subscription = {"status": "canceled"}
            if subscription.get("status") in ("active", "trialing"):
                with session_scope() as session:
                    enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
                    if dunning.mark_paid(session, enrollment, actor=ACTOR):
                        recovered.append(enrollment_id)
                continue
            if subscription.get("status") != "canceled":
                gateway.cancel_subscription(subscription_id)
        with session_scope() as session:
            enrollment = enrollment_ops.lock_enrollment(session, enrollment_id)
            if dunning.cancel_for_nonpayment(session, enrollment, actor=ACTOR):
                cancelled.append(enrollment_id)
    return {"cancelled": cancelled, "paid_in_time": recovered}


def expire_makeup_credits() -> dict:
    """Make-up credits past their window → expired; booked ones whose date passed → used."""
    with session_scope() as session:
        expired, used = attendance.expire_makeup_credits(session, actor=ACTOR)
    return {"expired": expired, "used": used}


def end_finished_enrollments() -> dict:
    """Enrollments past their end date that Stripe no longer renews (cancelled at the end of their
    paid period, moved to another slot, offline) → cancelled, their end date kept (the slot is
    booked from the day after). Nothing is asked of Stripe: a subscription cancelled at its
    period end ends by itself (`customer.subscription.deleted`, which does the same)."""
    with session_scope() as session:
        ended = changes.finish_past_their_end(session, actor=ACTOR)
    return {"ended": ended}


def retry_stuck_emails() -> dict:
    """Emails still `queued` after EMAIL_STUCK_SECONDS (dispatch lost) or `sending` after
    EMAIL_SENDING_STALE_SECONDS (worker died mid-send): send again. The send task claims the row
    (an email on its way right now is left alone) and, as on every attempt after the first,
    looks it up at Mailjet by its CustomID first: what the dead worker did hand over is marked
    sent, not sent twice."""
    from workers.mailer import sending_stale_after
    from workers.tasks import send_email

    now = utcnow()
    queued_before = now - timedelta(seconds=get_settings().EMAIL_STUCK_SECONDS)
    sending_before = now - sending_stale_after()
    with session_scope(write=False) as session:
        # The later cutoff in the query, each status's own cutoff on the rows it returns.
        ids = [
            email.id
            for email in stuck_emails(session, older_than=max(queued_before, sending_before))
            if email.updated_at <= (queued_before if email.status == "queued" else sending_before)
        ]
    for email_id in ids:
        send_email(email_id)
    return {"requeued": ids}


def send_lesson_reminders() -> dict:
    """Lesson reminders REMINDER_HOURS_BEFORE ahead, by email and SMS as each family chose, once
    per lesson and channel (models.reminders); texts never sent are sent again."""
    from models.reminders import queue_lesson_reminders
    from models.sms import stuck_sms
    from workers.sms_gateway import sending_stale_after
    from workers.tasks import send_sms

    with session_scope() as session:
        queued = queue_lesson_reminders(session, now=utcnow())
    with session_scope(write=False) as session:
        # A dispatch lost after commit, or a worker dead mid-send: the send task claims the row
        # (a text on its way right now is left alone) and looks it up at Twilio first.
        stuck = stuck_sms(session, older_than=utcnow() - max(sending_stale_after(), timedelta(minutes=5)))
    for sms_id in stuck:
        send_sms(sms_id)
    return {"email": queued.email, "sms": queued.sms, "sms_requeued": stuck}


def announce_makeup_slots() -> dict:
    """Lesson dates families called off, announced to the families holding a make-up credit that
    fits one: one `makeup_slots_available` a family a day at most (models.makeup_news)."""
    with session_scope() as session:
        announced = makeup_news.announce_makeup_slots(session, now=utcnow())
    return {"families": sorted(announced), "dates": sum(len(dates) for dates in announced.values())}


def retry_stuck_events() -> dict:
    """Stripe events stored but still unprocessed after a while (the task was lost): process them.
    Stripe had its 200 and will not resend; the handlers act on Stripe's current state, so a
    second processing of an event still being retried changes nothing."""
    from models.billing import stuck_stripe_events
    from workers.tasks import process_stripe_event

    older_than = utcnow() - timedelta(seconds=get_settings().RECONCILE_STALE_SECONDS)
    with session_scope(write=False) as session:
        ids = stuck_stripe_events(session, older_than=older_than)
    for event_id in ids:
        process_stripe_event(event_id)
    return {"requeued": ids}


@dataclass(frozen=True)
class Job:
    """A periodic job: what it does, when the consumer runs it (`schedule` for people, `every`
    for `studioctl doctor`, which calls a job late past one and a half of them), and the function."""

    name: str
    schedule: str
    every: timedelta
    run: Callable[[], dict]

    @property
    def help(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job("expire_provisional_holds", "every minute", timedelta(minutes=1), expire_provisional_holds),
        Job("offer_freed_slots", "every 5 minutes", timedelta(minutes=5), offer_freed_slots),
        Job("reconcile_bookings", "every 5 minutes", timedelta(minutes=5), reconcile_bookings),
        Job("retry_stuck_emails", "every 5 minutes", timedelta(minutes=5), retry_stuck_emails),
        Job("retry_stuck_events", "every 5 minutes", timedelta(minutes=5), retry_stuck_events),
        Job("enforce_dunning", "hourly", timedelta(hours=1), enforce_dunning),
        Job("send_lesson_reminders", "hourly", timedelta(hours=1), send_lesson_reminders),
        Job("announce_makeup_slots", "hourly", timedelta(hours=1), announce_makeup_slots),
        Job("reconcile_stripe", "nightly at 03:15 UTC", timedelta(days=1), reconcile_stripe),
        Job("expire_makeup_credits", "daily at 04:30 UTC", timedelta(days=1), expire_makeup_credits),
        Job("end_finished_enrollments", "daily at 05:20 UTC", timedelta(days=1), end_finished_enrollments),
    )
}


def run_job(name: str) -> dict:
    """Run a periodic job now, under the same lock the consumer uses (TaskLockedException if busy).
    The run, and whether it failed, is recorded for `studioctl doctor`."""
    job = JOBS[name]
    with huey.lock_task(name), logs.context(job=name):
        started = utcnow()
        try:
            result = job.run()
        except Exception as error:
            _record_run(name, started, error=f"{type(error).__name__}: {error}".splitlines()[0])
            _note_run(name, started, "failed", error=type(error).__name__)
            raise
        _record_run(name, started, error=None)
        _note_run(
            name, started, "ok", summary={key: len(value) if isinstance(value, list) else value for key, value in result.items()}
        )
        return result


def _note_run(name: str, started, outcome: str, **fields) -> None:
    """One `job.run` event (what the job did, as counts) and the runs' counter."""
    metrics.JOB_RUNS.labels(name, outcome).inc()
    seconds = (utcnow() - started).total_seconds()
    level = logging.INFO if outcome == "ok" else logging.WARNING
    logs.event(log, "job.run", level=level, job=name, outcome=outcome, duration_ms=round(seconds * 1000, 1), **fields)


def _record_run(name: str, started, *, error: str | None) -> None:
    try:
        with session_scope() as session:
            health.record_job_run(session, name=name, started_at=started, finished_at=utcnow(), error=error)
    except Exception:  # the job's own outcome matters more than its record
        log.exception("could not record the run of %s", name)


def consumer_name() -> str:
    """This process as its heartbeat names it: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat() -> dict:
    """Record that this consumer is consuming its queue (the heartbeat `studioctl doctor` reads)."""
    with session_scope() as session:
        health.record_heartbeat(session, consumer=consumer_name(), started_at=PROCESS_STARTED)
    return {"consumer": consumer_name()}


# The consumer's schedule (Huey checks it every 60 s and at start; `utc=True` so crontabs are UTC).


@huey.periodic_task(crontab(minute="*"), name="periodic_heartbeat")
def periodic_heartbeat():
    return beat()


@huey.periodic_task(crontab(minute="*"), name="periodic_expire_provisional_holds")
def periodic_expire_provisional_holds():
    return run_job("expire_provisional_holds")


@huey.periodic_task(crontab(minute="4-59/5"), name="periodic_offer_freed_slots")
def periodic_offer_freed_slots():
    return run_job("offer_freed_slots")


@huey.periodic_task(crontab(minute="*/5"), name="periodic_reconcile_bookings")
def periodic_reconcile_bookings():
    return run_job("reconcile_bookings")


@huey.periodic_task(crontab(minute="2-59/5"), name="periodic_retry_stuck_emails")
def periodic_retry_stuck_emails():
    return run_job("retry_stuck_emails")


@huey.periodic_task(crontab(minute="3-59/5"), name="periodic_retry_stuck_events")
def periodic_retry_stuck_events():
    return run_job("retry_stuck_events")


@huey.periodic_task(crontab(minute="7"), name="periodic_enforce_dunning")
def periodic_enforce_dunning():
    return run_job("enforce_dunning")


@huey.periodic_task(crontab(minute="11"), name="periodic_send_lesson_reminders")
def periodic_send_lesson_reminders():
    return run_job("send_lesson_reminders")


@huey.periodic_task(crontab(minute="13"), name="periodic_announce_makeup_slots")
def periodic_announce_makeup_slots():
    return run_job("announce_makeup_slots")


@huey.periodic_task(crontab(minute="15", hour="3"), name="periodic_reconcile_stripe")
def periodic_reconcile_stripe():
    return run_job("reconcile_stripe")


@huey.periodic_task(crontab(minute="30", hour="4"), name="periodic_expire_makeup_credits")
def periodic_expire_makeup_credits():
    return run_job("expire_makeup_credits")


@huey.periodic_task(crontab(minute="20", hour="5"), name="periodic_end_finished_enrollments")
def periodic_end_finished_enrollments():
    return run_job("end_finished_enrollments")
