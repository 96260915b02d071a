"""Applying teachers' time off to a booking that starts taking place after it was recorded
(`models.time_off_bookings`): run right after the commit that made the enrollment taught.

Its own unit of work, so the booking's commit never waits for it or rolls back with it; a
failure is logged (the booking stays; `studioctl attendance mark` cancels a lesson by hand).
Safe to run again: a lesson already marked is not cancelled twice."""

from __future__ import annotations

import logging

from models import time_off_bookings
from models.db import session_scope
from models.enrollment import Enrollment

log = logging.getLogger(__name__)
ACTOR = "worker"


def apply_time_off(enrollment_id: int) -> list[str]:
    """Cancel `enrollment_id`'s lessons inside its teacher's time off without a substitute; their labels."""
    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        due = enrollment is not None and bool(time_off_bookings.lessons_in_time_off(session, enrollment))
    if not due:  # most bookings: their teacher is not away; no write lock taken
        return []
    with session_scope() as session:
        lessons = time_off_bookings.apply_time_off(session, enrollment_id, actor=ACTOR)
    labels = [lesson.label for lesson in lessons]
    if labels:
        log.info("enrollment %s: lessons cancelled by time off: %s", enrollment_id, ", ".join(labels))
    return labels
