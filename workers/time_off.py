"""Applying teachers' time off to a booking that starts taking place after it was recorded
(`models.time_off_bookings`): run right after the commit that made the enrollment taught.

Its own unit of work, so the booking's commit never waits for it or rolls back with it; a
failure is logged (the booking stays; `studioctl attendance mark` cancels a lesson by hand). A
writing unit even when the teacher is not away: it takes the teacher's row lock before it reads
the time off, so a time off recorded at the same moment is not missed.
Safe to run again: a lesson already marked is not cancelled twice."""

from __future__ import annotations

import logging

from models import time_off_bookings
from models.db import session_scope

log = logging.getLogger(__name__)
ACTOR = "worker"


def apply_time_off(enrollment_id: int) -> list[str]:
    """Cancel `enrollment_id`'s lessons inside its teacher's time off without a substitute; their labels."""
    with session_scope() as session:
        lessons = time_off_bookings.apply_time_off(session, enrollment_id, actor=ACTOR)
    labels = [lesson.label for lesson in lessons]
    if labels:
        log.info("enrollment %s: lessons cancelled by time off: %s", enrollment_id, ", ".join(labels))
    return labels
