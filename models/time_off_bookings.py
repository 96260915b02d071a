"""Bookings whose lessons take place after a teacher's time off was recorded (issue 15, item 2).

`studioctl teachers time-off add` cancels, without a substitute, the lessons that exist when it
is recorded (`models.substitutes`). An enrollment that becomes one whose lessons take place
later (a parent's booking activated by the pipeline, an accepted waiting-list offer once paid,
an offline `enrollments assign` or roster import, a move, a paused booking resumed) has lessons
in that time off too: `models.time_off` notes every enrollment entering the taught statuses (a
flush hook; the booking door for the rows it inserts) and, after commit, hands it to the
dispatcher a process installs (`set_booking_dispatcher`), which checks under the teacher's row
lock whether the teacher is away ahead (`teacher_away_ahead`) and only then enqueues the task
`workers.time_off.apply_time_off`, which cancels in its own unit of work the enrollment's
lessons from today on inside each time off of its teacher without a substitute, as `time-off
add` does (`teacher_cancelled` through `models.attendance.mark_attendance`: the credit, the
`make_up_invite`, the audit). Once per lesson: a marked lesson is not one to cancel.

With a substitute nothing is done: the lesson takes place and every read model names the
substitute by date. The substitute's own availability is not checked again (a booking on the
absent teacher's slot at a time the substitute teaches is a clash the admin settles).
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session

from models.clock import studio_today
from models.db import lock_row
from models.enrollment import TAUGHT_STATUSES, Enrollment, lesson_end, lock_enrollment
from models.people import Teacher
from models.scheduling import Timeslot
from models.substitutes import AwayLesson, cancel_away_lesson, teacher_lessons
from models.time_off import TimeOff, overlapping


def lessons_in_time_off(session: Session, enrollment: Enrollment) -> list[tuple[TimeOff, AwayLesson]]:
    """The enrollment's lessons from today on, not marked yet, inside a time off of its teacher
    without a substitute (with that time off). Empty unless its lessons take place."""
    if enrollment.status not in TAUGHT_STATUSES:
        return []
    slot = session.get(Timeslot, enrollment.timeslot_id)
    first = max(studio_today(), enrollment.start_date)
    last = lesson_end(session, enrollment) or date.max
    found = []
    for row in overlapping(session, first, last, teacher_id=slot.teacher_id):
        if row.substitute_id is not None:
            continue
        start, end = max(first, row.starts_on), min(last, row.ends_on)
        found += [
            (row, lesson)
            for lesson in teacher_lessons(session, slot.teacher_id, start, end)
            if lesson.enrollment_id == enrollment.id
        ]
    return found


def teacher_away_ahead(session: Session, enrollment_id: int) -> bool:
    """Whether `enrollment_id`'s teacher has a time off without a substitute from today on (then
    its lessons may need cancelling). Under the teacher's row lock, as `time-off add` takes it: a
    time off being recorded now has committed when this reads, and one recorded after it sees
    the enrollment. One short unit of work per booking that starts taking place."""
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None:
        return False
    teacher_id = session.get(Timeslot, enrollment.timeslot_id).teacher_id
    lock_row(session, Teacher, teacher_id)
    return any(row.substitute_id is None for row in overlapping(session, studio_today(), date.max, teacher_id=teacher_id))


def apply_time_off(session: Session, enrollment_id: int, *, actor: str) -> list[AwayLesson]:
    """Cancel `enrollment_id`'s lessons inside its teacher's time off without a substitute (see
    the module); the lessons cancelled (none the second time). Under the teacher's row lock, as
    `time-off add` takes it, then the enrollment's: a time off being recorded meanwhile (which saw
    the enrollment still a hold) has committed when this reads the teacher's time off."""
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None:
        return []
    lock_row(session, Teacher, session.get(Timeslot, enrollment.timeslot_id).teacher_id)
    enrollment = lock_enrollment(session, enrollment_id)
    found = lessons_in_time_off(session, enrollment)
    for row, lesson in found:
        cancel_away_lesson(session, row, lesson, actor=actor)
    return [lesson for _, lesson in found]
