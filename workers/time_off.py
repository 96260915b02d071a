"""Applying teachers' time off to a booking that starts taking place after it was recorded
(`models.time_off_bookings`): a task enqueued after the commit that made the enrollment taught.

Its own unit of work, so the booking's commit never waits for it or rolls back with it. A
writing unit even when the teacher is not away: it takes the teacher's row lock before it reads
the time off, so a time off recorded at the same moment is not missed. Transient failures are
retried; the last failure leaves a dead letter and an admin alert (`workers.tasks.RETRYABLE`),
and `studioctl deadletters retry` runs it again. Safe to run again: a lesson already marked is
not cancelled twice."""

from __future__ import annotations

import logging

from models import time_off_bookings
from models.db import session_scope
from workers.app import TASK_RETRIES, TASK_RETRY_BACKOFF, TASK_RETRY_DELAY, huey

log = logging.getLogger(__name__)
ACTOR = "worker"


def cancel_lessons_in_time_off(enrollment_id: int) -> list[str]:
    """Cancel `enrollment_id`'s lessons inside its teacher's time off without a substitute; their labels."""
    with session_scope() as session:
        lessons = time_off_bookings.apply_time_off(session, enrollment_id, actor=ACTOR)
    labels = [lesson.label for lesson in lessons]
    if labels:
        log.info("enrollment %s: lessons cancelled by time off: %s", enrollment_id, ", ".join(labels))
    return labels


def enqueue_if_teacher_away(enrollment_id: int) -> None:
    """After the commit that made `enrollment_id` taught: queue `apply_time_off` when its teacher
    has time off without a substitute ahead (most bookings: a short read under the teacher's
    row lock, nothing queued). A failed check is logged and left to the task's own check, queued anyway."""
    try:
        with session_scope() as session:
            if not time_off_bookings.teacher_away_ahead(session, enrollment_id):
                return
    except Exception:  # the booking stands; the task checks again under the same lock
        log.exception("time off check of enrollment %s failed; queueing apply_time_off", enrollment_id)
    apply_time_off(enrollment_id)


@huey.task(retries=TASK_RETRIES, retry_delay=TASK_RETRY_DELAY, retry_backoff=TASK_RETRY_BACKOFF)
def apply_time_off(enrollment_id: int) -> list[str]:
    """After the commit in which `enrollment_id` started taking place: its lessons inside its
    teacher's time off without a substitute become `teacher_cancelled` (credits and invites as
    `time-off add` gives them); the labels of the lessons cancelled."""
    return cancel_lessons_in_time_off(enrollment_id)
