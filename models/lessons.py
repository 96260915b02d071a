"""A family's lessons over a range of dates: the weekly lessons of its live enrollments and its
booked make-ups (`GET /parent/lessons`, `studioctl payees lessons`).

Lessons are derived, never stored: a slot's weekday dates inside the enrollment's dates (its
`end_date`, else its semester's end), minus the closures (its semester's, or every one for
an enrollment without a semester, as `models.enrollment.lesson_dates`), each placed at the
slot's wall-clock time in the studio's zone (`occurrence_start`: right across DST changes).
A paused enrollment has no lessons; a hold's are `tentative` until it is paid. Closure dates
are not lessons, make-ups included. A lesson on a date its teacher is away with a substitute
names the substitute (`models.time_off`). Five queries whatever the range and the family's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from models.attendance import TAKEN_STATUSES, Attendance, MakeUp
from models.clock import occurrence_start
from models.enrollment import HOLD_STATUSES, LIVE_STATUSES, OFFERED, PAUSED, Enrollment
from models.errors import Invalid
from models.locations import Location, Room
from models.people import Instrument, Student, Teacher
from models.scheduling import Semester, Timeslot, closures_by_semester, slot_dates
from models.time_off import Covers, covers_between

DEFAULT_WEEKS = 8  # a listing without `to`
MAX_WEEKS = 26  # the longest range one listing answers
LESSON, MAKEUP = "lesson", "makeup"
_LISTED = tuple(status for status in LIVE_STATUSES if status not in (PAUSED, OFFERED))  # an offer is no lesson yet
_LAST_DAY = date.max - timedelta(weeks=DEFAULT_WEEKS + 1)  # a range and its week steps stay inside the calendar


@dataclass(frozen=True)
class Lesson:
    """One lesson of the family: a weekly one (`enrollment_id`) or a make-up (`makeup_id`)."""

    date: date
    starts_at: datetime
    kind: str
    student_id: int
    student: str
    teacher: str
    instrument: str | None
    timeslot_id: int
    enrollment_id: int | None = None
    makeup_id: int | None = None
    attendance_id: int | None = None
    attendance: str | None = None  # the mark, once the studio (or the family's absence) recorded one
    tentative: bool = False  # a hold not paid yet
    substitute: str | None = None  # who teaches instead of `teacher` (time off)
    location: str | None = None  # where: the slot's room and its location (None: not said)
    room: str | None = None


def lesson_range(today: date, first: date | None = None, last: date | None = None) -> tuple[date, date]:
    """The dates a listing covers, both included: from `first` (default today) to `last`
    (default DEFAULT_WEEKS weeks on); Invalid when reversed or longer than MAX_WEEKS weeks."""
    first = first or today
    if first > _LAST_DAY or (last is not None and last > _LAST_DAY):
        raise Invalid(f"no lessons are listed after {_LAST_DAY}", field="from" if first > _LAST_DAY else "to")
    last = last or first + timedelta(weeks=DEFAULT_WEEKS, days=-1)
    if last < first:
        raise Invalid(f"`to` ({last}) is before `from` ({first})", field="to")
    if (last - first).days >= MAX_WEEKS * 7:
        raise Invalid(f"at most {MAX_WEEKS} weeks at a time ({first} to {last} is longer)", field="to")
    return first, last


def family_lessons(session: Session, payee_id: int, *, first: date, last: date, tz: ZoneInfo) -> list[Lesson]:
    """Every lesson of family `payee_id` from `first` to `last` (both included), by start."""
    closures, covers = closures_by_semester(session, first, last), covers_between(session, first, last)
    lessons = _weekly_lessons(session, payee_id, first, last, tz, closures, covers) + _makeups(
        session, payee_id, first, last, tz, closures, covers
    )
    lessons.sort(key=lambda lesson: (lesson.starts_at, lesson.kind, lesson.student, lesson.enrollment_id or lesson.makeup_id))
    return lessons


def _weekly_lessons(
    session: Session, payee_id: int, first: date, last: date, tz: ZoneInfo, closures: dict[int, set[date]], covers: Covers
) -> list[Lesson]:
    rows = session.execute(
        sa.select(
            col(Enrollment.id),
            col(Enrollment.status),
            col(Enrollment.start_date),
            col(Enrollment.end_date),
            col(Enrollment.semester_id),
            col(Semester.ends_on),
            col(Timeslot.id),
            col(Timeslot.weekday),
            col(Timeslot.start_minute),
            col(Teacher.id),
            col(Teacher.name),
            col(Student.id),
            col(Student.name),
            col(Instrument.name),
            col(Location.name),
            col(Room.name),
        )
        .join(Student, col(Student.id) == Enrollment.student_id)
        .join(Timeslot, col(Timeslot.id) == Enrollment.timeslot_id)
        .join(Teacher, col(Teacher.id) == Timeslot.teacher_id)
        .join(Instrument, col(Instrument.id) == Enrollment.instrument_id)
        .outerjoin(Semester, col(Semester.id) == Enrollment.semester_id)
        .outerjoin(Room, col(Room.id) == Timeslot.room_id)
        .outerjoin(Location, col(Location.id) == Room.location_id)
        .where(
            col(Student.payee_id) == payee_id,
            col(Enrollment.status).in_(_LISTED),
            col(Enrollment.start_date) <= last,
            (col(Enrollment.end_date).is_(None)) | (col(Enrollment.end_date) >= first),
        )
    ).all()
    if not rows:
        return []
    every_closure = set().union(*closures.values())
    marks = {
        (enrollment_id, day): (attendance_id, status)
        for attendance_id, enrollment_id, day, status in session.execute(
            sa.select(
                col(Attendance.id), col(Attendance.enrollment_id), col(Attendance.lesson_date), col(Attendance.status)
            ).where(
                col(Attendance.enrollment_id).in_(sorted({row[0] for row in rows})),
                col(Attendance.lesson_date) >= first,
                col(Attendance.lesson_date) <= last,
            )
        ).all()
    }
    lessons = []
    for (
        enrollment_id,
        status,
        start_date,
        end_date,
        semester_id,
        semester_end,
        slot_id,
        weekday,
        minute,
        teacher_id,
        teacher,
        student_id,
        student,
        instrument,
        location,
        room,
    ) in rows:
        end = end_date or semester_end or last
        closed = closures.get(semester_id, set()) if semester_id else every_closure
        for day in slot_dates(weekday, max(first, start_date), min(last, end), closed):
            attendance_id, mark = marks.get((enrollment_id, day), (None, None))
            lessons.append(
                Lesson(
                    date=day,
                    starts_at=occurrence_start(day, minute, tz),
                    kind=LESSON,
                    student_id=student_id,
                    student=student,
                    teacher=teacher,
                    instrument=instrument,
                    timeslot_id=slot_id,
                    enrollment_id=enrollment_id,
                    attendance_id=attendance_id,
                    attendance=mark,
                    tentative=status in HOLD_STATUSES,
                    substitute=covers.name(teacher_id, day),
                    location=location,
                    room=room,
                )
            )
    return lessons


def _makeups(
    session: Session, payee_id: int, first: date, last: date, tz: ZoneInfo, closures: dict[int, set[date]], covers: Covers
) -> list[Lesson]:
    rows = session.execute(
        sa.select(
            col(MakeUp.id),
            col(MakeUp.lesson_date),
            col(Timeslot.id),
            col(Timeslot.start_minute),
            col(Teacher.id),
            col(Teacher.name),
            col(Student.id),
            col(Student.name),
            col(Instrument.name),
            col(Location.name),
            col(Room.name),
        )
        .join(Student, col(Student.id) == MakeUp.student_id)
        .join(Timeslot, col(Timeslot.id) == MakeUp.timeslot_id)
        .join(Teacher, col(Teacher.id) == Timeslot.teacher_id)
        .outerjoin(Instrument, col(Instrument.id) == MakeUp.instrument_id)
        .outerjoin(Room, col(Room.id) == Timeslot.room_id)
        .outerjoin(Location, col(Location.id) == Room.location_id)
        .where(
            col(Student.payee_id) == payee_id,
            col(MakeUp.status).in_(TAKEN_STATUSES),
            col(MakeUp.lesson_date) >= first,
            col(MakeUp.lesson_date) <= last,
        )
    ).all()
    closed = set().union(*closures.values())
    return [
        Lesson(
            date=day,
            starts_at=occurrence_start(day, minute, tz),
            kind=MAKEUP,
            student_id=student_id,
            student=student,
            teacher=teacher,
            instrument=instrument,
            timeslot_id=slot_id,
            makeup_id=makeup_id,
            substitute=covers.name(teacher_id, day),
            location=location,
            room=room,
        )
        for makeup_id, day, slot_id, minute, teacher_id, teacher, student_id, student, instrument, location, room in rows
        if day is not None and day not in closed
    ]
