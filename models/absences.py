"""Absences under the studio's make-up policy: a family calls off a lesson before it starts.

The policy is two settings. A lesson called off at least MAKEUP_NOTICE_HOURS (real hours,
whatever a DST change does to the wall clock) before it starts is `excused` and earns a
make-up credit with its `make_up_invite`, while the student has earned fewer than
MAKEUP_CREDITS_PER_SEMESTER credits by excused absences in that semester's make-up window;
past the cap it is still `excused`, with no credit and a `credit_reason`. Called off later,
it is `late_cancel`: no credit. Teacher cancellations and the admin's `makeups grant` are
not counted and not capped (the grant is how the admin overrides the policy).

The admin's `attendance mark` (`mark_lesson`) applies the cap but not the notice: the admin
often records the family's call after the fact, so the time of the mark is not the time of
the call; the admin marks `late_cancel` when the call came late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session, col, func, select

from models.attendance import EXCUSED, FREES_SLOT_DATE, LATE_CANCEL, TAKEN_STATUSES, Attendance, MakeUp, mark_attendance
from models.base import utcnow
from models.clock import occurrence_start
from models.config import get_settings
from models.db import lock_row
from models.enrollment import ACTIVE, PAST_DUE, Enrollment, get_enrollment, is_occurrence
from models.errors import AlreadyMarked, Conflict, Invalid
from models.people import Student
from models.scheduling import Timeslot, current_or_next_semester

# An attendance mark a family's absence report gives (a repeat of the report answers it again).
ABSENCE_STATUSES = (EXCUSED, LATE_CANCEL)
# A family reports absences for the lessons of these bookings (a hold has no lessons yet).
REPORTABLE_STATUSES = (ACTIVE, PAST_DUE)


@dataclass(frozen=True)
class Absence:
    """A lesson's mark after an absence report or an admin's mark, and what it earned."""

    attendance: Attendance
    credit: MakeUp | None
    credit_reason: str | None  # why no credit, when the mark is an absence without one
    created: bool  # False: the report found the absence already recorded and changed nothing


def makeup_policy() -> dict:
    """The make-up policy as configured (`studioctl makeups policy`)."""
    settings = get_settings()
    return {"notice_hours": settings.MAKEUP_NOTICE_HOURS, "credits_per_semester": settings.MAKEUP_CREDITS_PER_SEMESTER}


def _credits_earned(session: Session, student_id: int, window_ends_on: date) -> int:
    """Credits the student earned by excused absences in the make-up window ending then."""
    return session.exec(
        select(func.count())
        .select_from(MakeUp)
        .join(Attendance, col(Attendance.id) == col(MakeUp.origin_attendance_id))
        .where(col(MakeUp.student_id) == student_id, col(MakeUp.expires_on) == window_ends_on, col(Attendance.status) == EXCUSED)
    ).one()


def _cap_refusal(session: Session, student: Student, lesson_date: date) -> str | None:
    """Why an excused absence on `lesson_date` earns no credit, or None while one is left."""
    cap = get_settings().MAKEUP_CREDITS_PER_SEMESTER
    semester = current_or_next_semester(session, lesson_date)
    if semester is None:
        return f"no make-up credit: no semester's make-up window follows {lesson_date}"
    if _credits_earned(session, student.id, semester.makeup_ends_on) < cap:
        return None
    return _over_cap(student, semester.name, cap)


def _over_cap(student: Student, semester_name: str, cap: int) -> str:
    if cap == 0:
        return "no make-up credit: the studio gives none for absences"
    plural = "s" if cap != 1 else ""
    return f"no make-up credit: {student.name} already has the {cap} make-up credit{plural} for absences {semester_name} allows"


def credit_reason(session: Session, row: Attendance, credit: MakeUp | None) -> str | None:
    """Why an absence mark carries no make-up credit (None when it has one, or is no absence).

    Read from the mark itself, so a repeated report answers the same words."""
    if credit is not None or row.status not in ABSENCE_STATUSES:
        return None
    if row.status == LATE_CANCEL:
        hours = get_settings().MAKEUP_NOTICE_HOURS
        return f"no make-up credit: called off less than {hours} hours before the lesson (a late cancellation)"
    enrollment = session.get(Enrollment, row.enrollment_id)
    student = session.get(Student, enrollment.student_id)
    semester = current_or_next_semester(session, row.lesson_date)
    if semester is None:
        return f"no make-up credit: no semester's make-up window follows {row.lesson_date}"
    return _over_cap(student, semester.name, get_settings().MAKEUP_CREDITS_PER_SEMESTER)


def _credit_of(session: Session, row: Attendance) -> MakeUp | None:
    return session.exec(select(MakeUp).where(col(MakeUp.origin_attendance_id) == row.id)).first()


def report_absence(
    session: Session,
    *,
    payee_id: int,
    enrollment_id: int,
    lesson_date: date,
    reason: str | None,
    actor: str,
    now: datetime | None = None,
) -> Absence:
    """A family calls off one lesson of its booking that has not started (the policy above).

    Another family's booking is NotFound; a hold or an ended booking Conflict; a date that is
    no lesson of the booking (weekday, closure, outside its dates) or a lesson already started
    Invalid. A lesson already marked `excused` or `late_cancel` is answered as it is
    (`created=False`, nothing written); any other mark is AlreadyMarked.
    """
    enrollment = get_enrollment(session, enrollment_id, payee_id=payee_id)
    # The student's row lock serialises their reports: a repeat waits and finds the first
    # one's mark, and two absences at once cannot both take the last credit under the cap.
    student = lock_row(session, Student, enrollment.student_id)
    if enrollment.status not in REPORTABLE_STATUSES:
        raise Conflict(f"booking {enrollment.id} is {enrollment.status}: it has no lessons to call off")
    if not is_occurrence(session, enrollment, lesson_date):
        raise Invalid(f"{lesson_date} is not a lesson of booking {enrollment.id}", field="date")
    row = session.exec(
        select(Attendance).where(col(Attendance.enrollment_id) == enrollment.id, col(Attendance.lesson_date) == lesson_date)
    ).first()
    if row is not None:
        if row.status not in ABSENCE_STATUSES:
            raise AlreadyMarked(f"the lesson on {lesson_date} is already marked {row.status}", field="date")
        credit = _credit_of(session, row)
        return Absence(row, credit, credit_reason(session, row, credit), created=False)
    settings = get_settings()
    slot = session.get(Timeslot, enrollment.timeslot_id)
    starts_at = occurrence_start(lesson_date, slot.start_minute, settings.tz)
    now = now or utcnow()
    if starts_at <= now:
        raise Invalid(f"the lesson on {lesson_date} has already started", field="date")
    in_time = starts_at - now >= timedelta(hours=settings.MAKEUP_NOTICE_HOURS)
    status = EXCUSED if in_time else LATE_CANCEL
    refusal = _cap_refusal(session, student, lesson_date) if in_time else None
    note = reason.strip() if reason and reason.strip() else None
    row, credit = mark_attendance(
        session, enrollment_id=enrollment.id, lesson_date=lesson_date, status=status, note=note, actor=actor, earn=refusal is None
    )
    return Absence(row, credit, credit_reason(session, row, credit), created=True)


def mark_lesson(
    session: Session, *, enrollment_id: int, lesson_date: date, status: str, note: str | None = None, actor: str
) -> Absence:
    """The admin marks (or re-marks) a lesson under the policy's cap: an `excused` mark that
    would take the student past MAKEUP_CREDITS_PER_SEMESTER gets no credit (`credit_reason`
    says so). The notice is not applied (see the module's docstring); `teacher_cancelled`
    always earns one."""
    enrollment = get_enrollment(session, enrollment_id)
    if status not in FREES_SLOT_DATE:
        _refuse_if_made_up(session, enrollment, lesson_date)
    refusal = None
    if status == EXCUSED:
        student = lock_row(session, Student, enrollment.student_id)
        refusal = _cap_refusal(session, student, lesson_date)
    # A mark that already carries a credit keeps it whatever the count (it is one of them).
    row, credit = mark_attendance(
        session, enrollment_id=enrollment_id, lesson_date=lesson_date, status=status, note=note, actor=actor, earn=refusal is None
    )
    return Absence(row, credit, credit_reason(session, row, credit), created=True)


def _refuse_if_made_up(session: Session, enrollment: Enrollment, lesson_date: date) -> None:
    """A lesson its family called off is free for another student's make-up: once one is booked
    there, the lesson cannot be marked as taught (Conflict) until that make-up is cancelled."""
    lock_row(session, Timeslot, enrollment.timeslot_id)  # serialised with make-up bookings on the slot
    made_up = session.exec(
        select(MakeUp.id).where(
            col(MakeUp.timeslot_id) == enrollment.timeslot_id,
            col(MakeUp.lesson_date) == lesson_date,
            col(MakeUp.status).in_(TAKEN_STATUSES),
        )
    ).first()
    if made_up is not None:
        raise Conflict(
            f"the lesson on {lesson_date} was called off and make-up {made_up} is booked in its place; cancel that make-up first"
        )
