"""Huey tasks. Each takes ids, runs one unit of work, and is enqueued only after the caller's commit.

The public entry points other layers enqueue (keep these names and signatures):
- `book_enrollment(enrollment_id)`      the Stripe booking pipeline of a provisional enrollment
- `cancel_subscription(enrollment_id)`  cancel the Stripe side of a cancelled enrollment
- `send_email(email_id)`                send one EmailLog row (dispatched automatically after commit)
- `send_sms(sms_id)`                    send one SmsLog row (dispatched automatically after commit)
- `process_stripe_event(event_id)`      act on a stored StripeEvent row (local id)
- `undo_orphan_charges(enrollment_id)`  cancel/refund Stripe charges of a booking that ended unrecorded
- `move_subscription(enrollment_id)`    point a moved booking's subscription at the enrollment continuing it
- `offer_freed_slot(timeslot_id)`       offer a freed slot to the waiting list (`workers.offers`)
- `rebalance_sibling_discounts(enrollment_id)`  move the family's sibling discount in Stripe (`workers.sibling_discounts`)
- `apply_time_off(enrollment_id)`  a booking that starts taking place gets its teacher's time off (`workers.time_off`)

Transient errors (Stripe or Mailjet unreachable, 5xx, rate limits) are raised so Huey
retries with backoff; when the last retry fails, the SIGNAL_ERROR handler below (the
attempt with `task.retries == 0`) records the failure for good: DeadLetter, admin alert,
and the row's final state. Terminal errors are handled inside the task, without retries.

`RETRYABLE` is the one table of what a task's failure for good means, keyed by the task's
name (a dead letter's `kind`): what its last failed attempt records, and how an admin
replays its dead letter (`studioctl deadletters retry`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from huey.api import TaskWrapper
from huey.signals import SIGNAL_ERROR

from models import logs, outbox
from models.errors import Invalid
from workers import metrics
from workers.app import TASK_RETRIES, TASK_RETRY_BACKOFF, TASK_RETRY_DELAY, huey
from workers.offers import offer_freed_slot
from workers.sibling_discounts import discount_failed, rebalance_sibling_discounts
from workers.time_off import apply_time_off

log = logging.getLogger(__name__)

RETRYING = {"retries": TASK_RETRIES, "retry_delay": TASK_RETRY_DELAY, "retry_backoff": TASK_RETRY_BACKOFF}


def about(field: str):
    """The task's one argument, named `field` (`enrollment_id`...), on every line it logs."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(row_id: int):
            with logs.context(**{field: row_id}):
                return fn(row_id)

        return run

    return decorate


@huey.task(**RETRYING)
@about("enrollment_id")
def book_enrollment(enrollment_id: int) -> str:
    """Run the booking pipeline for one enrollment; returns where it stopped."""
    from workers import pipeline
    from workers.stripe_gateway import TerminalStripeError

    try:
        result = pipeline.run_booking(enrollment_id)
    except TerminalStripeError as error:
        if pipeline.fail_booking(enrollment_id, str(error)) and error.ambiguous:
            undo_orphan_charges(enrollment_id)  # a 5xx Stripe says not to retry may still have charged
        result = "failed"
    metrics.PIPELINE_RESULTS.labels(result).inc()
    logs.event(log, "booking.result", result=result)
    return result


@huey.task(**RETRYING)
@about("enrollment_id")
def cancel_subscription(enrollment_id: int) -> str:
    """Cancel the Stripe subscription of an enrollment that is no longer live."""
    from models.changes import successor_id
    from models.db import session_scope
    from models.enrollment import LIVE_STATUSES, Enrollment
    from workers.stripe_gateway import StripeGateway, TerminalStripeError, is_not_found

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None or enrollment.status in LIVE_STATUSES:
            return "skipped"
        subscription_id = enrollment.stripe_subscription_id
        moved = not subscription_id and successor_id(session, enrollment_id) is not None
    if moved:  # its subscription went with the move, to the enrollment that continues it
        return "skipped"
    if not subscription_id:
        # A hold cancelled while (or after) its worker charged: nothing is linked, Stripe may
        # still hold a subscription or payment carrying the enrollment's id.
        return undo_orphan_charges.call_local(enrollment_id).replace("clean", "skipped")
    try:
        StripeGateway().cancel_subscription(subscription_id)
    except TerminalStripeError as error:
        if is_not_found(error):
            return "skipped"
        _cancel_failed(enrollment_id, str(error))
        return "failed"
    return "cancelled"


@huey.task(**RETRYING)
@about("enrollment_id")
def undo_orphan_charges(enrollment_id: int) -> str:
    """Cancel and refund what Stripe charged for a booking that ended without recording it."""
    from workers import booking_activation
    from workers.stripe_gateway import TerminalStripeError

    try:
        return booking_activation.undo_orphan_charges(enrollment_id)
    except TerminalStripeError as error:
        _undo_failed(enrollment_id, str(error))
        return "failed"


@huey.task(**RETRYING)
@about("enrollment_id")
def move_subscription(enrollment_id: int) -> str:
    """A moved booking: its Stripe subscription's `metadata.enrollment_id` names the enrollment that
    continues it (no charge). `updated`, or `skipped` when that enrollment no longer holds a
    live subscription (moved on again, ended, or the subscription is gone)."""
    from models.db import session_scope
    from models.enrollment import LIVE_STATUSES, Enrollment
    from workers.stripe_gateway import StripeGateway, TerminalStripeError, is_not_found

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None or enrollment.status not in LIVE_STATUSES or not enrollment.stripe_subscription_id:
            return "skipped"
        subscription_id = enrollment.stripe_subscription_id
    try:
        StripeGateway().update_subscription_metadata(
            subscription_id,
            {"enrollment_id": str(enrollment_id)},
            key=f"subscription-{subscription_id}-enrollment-{enrollment_id}",
        )
    except TerminalStripeError as error:
        if is_not_found(error):
            return "skipped"
        _move_failed(enrollment_id, str(error))
        return "failed"
    return "updated"


@huey.task(**RETRYING)
@about("email_id")
def send_email(email_id: int) -> str:
    """Send one queued email (sent once, whatever the retries)."""
    from workers.mailer import deliver

    return deliver(email_id)


@huey.task(**RETRYING)
@about("sms_id")
def send_sms(sms_id: int) -> str:
    """Send one queued text message (sent once, whatever the retries: workers/sms_gateway.py)."""
    from workers.sms_gateway import deliver

    return deliver(sms_id)


@huey.task(**RETRYING)
@about("event_id")
def process_stripe_event(event_id: int) -> str:
    """Process one stored Stripe event; returns its final status. The work it leaves (bookings
    to resume, charges to check) is enqueued once the event's processing has committed."""
    from workers.webhook_events import process_event

    outcome = process_event(event_id)
    enqueue_follow_ups(outcome)
    return outcome.status


def enqueue_follow_ups(outcome) -> None:
    """Enqueue what a processed webhook event (`workers.webhook_events.Outcome`) or a
    reconciliation left to do: its bookings to resume and its ended bookings to check."""
    for enrollment_id in outcome.resume:
        book_enrollment(enrollment_id)
    for enrollment_id in outcome.undo:
        undo_orphan_charges(enrollment_id)


def _dead_letter_and_alert(task, payload: dict, error: str, *, subject: str, message: str, dedupe_key: str) -> None:
    """A task failed for good: a dead letter of its kind (retried by `task`) and one admin alert."""
    from models.db import session_scope

    with session_scope() as session:
        outbox.add_dead_letter(session, kind=task_name(task), payload=payload, error=error)
        outbox.queue_admin_alert(session, subject=subject, message=message, dedupe_key=dedupe_key)


def _cancel_failed(enrollment_id: int, error: str) -> None:
    _dead_letter_and_alert(
        cancel_subscription,
        {"enrollment_id": enrollment_id},
        error,
        subject=f"Cancelling the subscription of enrollment {enrollment_id} failed",
        message=f"{error}. Cancel it in the Stripe dashboard, then resolve the dead letter.",
        dedupe_key=f"cancel_failed:{enrollment_id}",
    )


def _move_failed(enrollment_id: int, error: str) -> None:
    _dead_letter_and_alert(
        move_subscription,
        {"enrollment_id": enrollment_id},
        error,
        subject=f"Pointing the subscription of moved booking {enrollment_id} at it failed",
        message=f"{error}. In the Stripe dashboard, set the subscription's metadata enrollment_id to {enrollment_id}, "
        "then resolve the dead letter (nothing is charged wrongly meanwhile: the subscription bills as before).",
        dedupe_key=f"move_failed:{enrollment_id}",
    )


def _undo_failed(enrollment_id: int, error: str) -> None:
    _dead_letter_and_alert(
        undo_orphan_charges,
        {"enrollment_id": enrollment_id},
        error,
        subject=f"Checking Stripe for charges of ended booking {enrollment_id} failed",
        message=f"{error}. Look for a subscription or payment with metadata enrollment_id={enrollment_id} "
        "in the Stripe dashboard, cancel and refund it, then resolve the dead letter.",
        dedupe_key=f"undo_failed:{enrollment_id}",
    )


def _time_off_failed(enrollment_id: int, error: str) -> None:
    _dead_letter_and_alert(
        apply_time_off,
        {"enrollment_id": enrollment_id},
        error,
        subject=f"Applying its teacher's time off to booking {enrollment_id} failed",
        message=f"{error}. Its lessons inside the time off may still be expected: retry the dead letter, or mark "
        "them teacher_cancelled with studioctl attendance mark.",
        dedupe_key=f"time_off_failed:{enrollment_id}",
    )


def _offer_failed(timeslot_id: int, error: str) -> None:
    from models.base import utcnow

    _dead_letter_and_alert(
        offer_freed_slot,
        {"timeslot_id": timeslot_id},
        error,
        subject=f"Offering freed timeslot {timeslot_id} to the waiting list failed",
        message=f"{error}. The periodic offer_freed_slots tries the slot again within 5 minutes; if it keeps "
        "failing, look at the worker's log, then retry or resolve the dead letter.",
        # One alert a slot a day: a slot freed again tomorrow that fails again is news again.
        dedupe_key=f"offer_failed:{timeslot_id}:{utcnow():%Y-%m-%d}",
    )


def _booking_failed(enrollment_id: int, error: str) -> None:
    from workers.pipeline import fail_booking

    if fail_booking(enrollment_id, f"Stripe could not be reached, gave up after retries ({error})"):
        undo_orphan_charges(enrollment_id)  # a lost answer may hide a charge that went through


def _email_failed(email_id: int, error: str) -> None:
    from workers.mailer import give_up_after_retries

    give_up_after_retries(email_id, error)


def _sms_failed(sms_id: int, error: str) -> None:
    from workers.sms_gateway import give_up_after_retries

    give_up_after_retries(sms_id, error)


def _requeue_sms(sms_id: int) -> None:
    from models import sms
    from models.db import session_scope

    with session_scope() as session:  # the send is enqueued once this commits
        sms.requeue_sms(session, sms.get_sms(session, sms_id), actor="admin")


def _event_failed(event_id: int, error: str) -> None:
    from workers.webhook_events import give_up_event

    give_up_event(event_id, error)


def _requeue_email(email_id: int) -> None:
    from models.db import session_scope

    with session_scope() as session:  # the send is enqueued once this commits
        outbox.requeue_email(session, outbox.get_email(session, email_id), actor="admin")


def _reprocess_event(event_id: int) -> None:
    from models.db import session_scope
    from models.stripe_records import reopen_stripe_event

    with session_scope() as session:
        reopen_stripe_event(session, ref=event_id, actor="admin")
    process_stripe_event(event_id)


def task_name(task: TaskWrapper) -> str:
    """The name Huey gives a task (the function's), which is also its dead letters' `kind`."""
    return task.task_class.__name__


@dataclass(frozen=True)
class Retryable:
    """A task whose failure for good leaves a dead letter `{argument: id}` of kind `task_name(task)`."""

    task: TaskWrapper
    argument: str  # the payload key holding the task's one argument
    on_final_failure: Callable[[int, str], None]  # (id, error): dead letter, alert, the row's final state
    queued: str = ""  # what a replay queues again, `{}` standing for the id
    # Puts the row back in a retryable state (audited) and enqueues the work; None: enqueue the task.
    reopen: Callable[[int], None] | None = None
    final: str = ""  # why a dead letter of this task is never replayed

    @property
    def name(self) -> str:
        return task_name(self.task)

    def replay(self, payload: dict) -> str:
        """Queue a dead letter's job again (the admin's retry); says what was queued.
        Invalid when the failure is final."""
        if self.final:
            raise Invalid(self.final)
        argument = payload[self.argument]
        if self.reopen is not None:
            self.reopen(argument)
        else:
            self.task(argument)
        return f"{self.queued.format(argument)} queued again"


RETRYABLE: dict[str, Retryable] = {
    entry.name: entry
    for entry in (
        Retryable(
            book_enrollment,
            "enrollment_id",
            _booking_failed,
            final="a failed booking is final: the parent books again (the slot is free)",
        ),
        Retryable(cancel_subscription, "enrollment_id", _cancel_failed, queued="cancellation of enrollment {}'s subscription"),
        Retryable(undo_orphan_charges, "enrollment_id", _undo_failed, queued="the Stripe check of ended booking {}"),
        Retryable(move_subscription, "enrollment_id", _move_failed, queued="the subscription metadata of moved booking {}"),
        Retryable(send_email, "email_id", _email_failed, queued="email {}", reopen=_requeue_email),
        Retryable(process_stripe_event, "event_id", _event_failed, queued="Stripe event {}", reopen=_reprocess_event),
        Retryable(send_sms, "sms_id", _sms_failed, queued="SMS {}", reopen=_requeue_sms),
        Retryable(offer_freed_slot, "timeslot_id", _offer_failed, queued="the waiting-list offer of timeslot {}"),
        Retryable(
            rebalance_sibling_discounts, "enrollment_id", discount_failed, queued="the sibling discount of booking {}'s family"
        ),
        Retryable(apply_time_off, "enrollment_id", _time_off_failed, queued="the time off check of booking {}"),
    )
}


def replay_dead_letter(*, kind: str, payload: dict) -> str:
    """Queue the job a dead letter describes again (its row put back in a retryable state
    first); says what was queued. Invalid for a final failure or an unknown kind."""
    entry = RETRYABLE.get(kind)
    if entry is None:
        raise Invalid(f"no replay for dead letters of kind {kind!r}")
    return entry.replay(payload)


@huey.signal(SIGNAL_ERROR)
def record_final_failure(signal, task, exc=None) -> None:
    """SIGNAL_ERROR fires on every failed attempt; only the last one (`retries == 0`) is final."""
    if task.retries:
        log.warning("%s%s failed, %s retries left: %s", task.name, tuple(task.args), task.retries, exc)
        return
    entry = RETRYABLE.get(task.name)
    if entry is None or not task.args:
        return
    try:
        entry.on_final_failure(task.args[0], f"{type(exc).__name__}: {exc}"[:1000])
    except Exception:  # the reconciliation jobs will find the row again
        log.exception("recording the final failure of %s%s failed", task.name, tuple(task.args))
