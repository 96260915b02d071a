"""Teachers' time off and substitutes (issue 15, item 2): `studioctl teachers time-off`.

A teacher's lessons in a time off are the weekly lessons of their slots' booked enrollments
(real occurrences: weekday, the enrollment's dates, no closure) that are not marked yet, and
the make-ups booked on their slots. Without a substitute each one is cancelled: a weekly lesson
is marked `teacher_cancelled` by `models.attendance.mark_attendance` (its make-up credit and
`make_up_invite`, as any teacher cancellation), a booked make-up is un-booked (`cancel_makeup`:
the credit is available again) and its family invited to book it again. With a substitute the
lessons take place: the substitute must teach each lesson's instrument and be free at its time
(no lesson or make-up of their own, no lesson they already cover, not away themselves), else
nothing is written and every conflict is listed. Booked make-ups record who teaches them
(`makeup.taught_by_id`); a weekly lesson's mark does when it is made (`models.attendance`);
each family gets one `substitute_notice` listing its lessons. While a teacher is away (or
covering), make-ups cannot be booked onto the slot-dates concerned (`models.time_off`).

Removing one is for a time off that has not begun: one with a substitute is undone (the
make-ups it gave the substitute go back to the slot's teacher); one without a substitute that
cancelled lessons is refused (the families were told and hold the credits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, col, select

from models.attendance import (
    BOOKED,
    EXCUSED,
    LATE_CANCEL,
    TEACHER_CANCELLED,
    Attendance,
    MakeUp,
    cancel_makeup,
    mark_attendance,
    queue_makeup_email,
)
from models.audit import change_audited, record_audit, snapshot
from models.clock import format_minute, studio_today, weekday_label
from models.config import get_settings
from models.db import lock_row
from models.enrollment import HOLD_STATUSES, TAUGHT_STATUSES, Enrollment, lesson_dates
from models.errors import Conflict, Invalid, NotFound
from models.outbox import queue_email
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument, get_teacher
from models.scheduling import Timeslot
from models.time_off import TimeOff, overlapping

MAX_DAYS = 366  # the longest time off one command records
MAX_REASON = 200  # it goes into the cancelled lessons' notes too (500 characters at most)
_CALLED_OFF = (EXCUSED, LATE_CANCEL, TEACHER_CANCELLED)  # a lesson that will not take place


@dataclass(frozen=True)
class AwayLesson:
    """One lesson of a teacher on a date of their time off: a weekly one or a booked make-up."""

    day: date
    start_minute: int
    student: str
    payee_id: int
    instrument_id: int | None
    instrument: str | None
    enrollment_id: int | None = None
    makeup_id: int | None = None

    @property
    def label(self) -> str:
        """`2026-11-03 16:00 Ben (piano)`."""
        instrument = f" ({self.instrument})" if self.instrument else ""
        return f"{self.day} {format_minute(self.start_minute)} {self.student}{instrument}"


@dataclass(frozen=True)
class TimeOffResult:
    """A time off just recorded and what it did to the teacher's lessons."""

    time_off: TimeOff
    cancelled: list[AwayLesson]  # without a substitute
    covered: list[AwayLesson]  # taught by the substitute


def teacher_lessons(session: Session, teacher_id: int, first: date, last: date, *, holds: bool = False) -> list[AwayLesson]:
    """The lessons of `teacher_id`'s slots from `first` to `last` that are to take place: weekly
    lessons of booked enrollments (with `holds`, of unpaid holds too) not marked yet, and
    booked make-ups. Sorted by date and time."""
    statuses = TAUGHT_STATUSES + (HOLD_STATUSES if holds else ())
    rows = session.exec(
        select(Enrollment, Timeslot, Student, Instrument)
        .join(Timeslot, col(Timeslot.id) == Enrollment.timeslot_id)
        .join(Student, col(Student.id) == Enrollment.student_id)
        .join(Instrument, col(Instrument.id) == Enrollment.instrument_id)
        .where(
            Timeslot.teacher_id == teacher_id,
            col(Enrollment.status).in_(statuses),
            Enrollment.start_date <= last,
            col(Enrollment.end_date).is_(None) | (col(Enrollment.end_date) >= first),
        )
    ).all()
    marked = set(
        session.exec(
            select(col(Attendance.enrollment_id), col(Attendance.lesson_date)).where(
                col(Attendance.enrollment_id).in_([enrollment.id for enrollment, *_ in rows]),
                Attendance.lesson_date >= first,
                Attendance.lesson_date <= last,
            )
        ).all()
    )
    lessons = [
        AwayLesson(
            day, slot.start_minute, student.name, student.payee_id, instrument.id, instrument.name, enrollment_id=enrollment.id
        )
        for enrollment, slot, student, instrument in rows
        for day in lesson_dates(session, enrollment, first=first, last=last)
        if (enrollment.id, day) not in marked
    ]
    makeups = session.exec(
        select(MakeUp, Timeslot, Student, Instrument)
        .join(Timeslot, col(Timeslot.id) == MakeUp.timeslot_id)
        .join(Student, col(Student.id) == MakeUp.student_id)
        .outerjoin(Instrument, col(Instrument.id) == MakeUp.instrument_id)
        .where(
            Timeslot.teacher_id == teacher_id, MakeUp.status == BOOKED, MakeUp.lesson_date >= first, MakeUp.lesson_date <= last
        )
    ).all()
    for credit, slot, student, instrument in makeups:
        name = instrument.name if instrument else None
        lessons.append(
            AwayLesson(
                credit.lesson_date,
                slot.start_minute,
                student.name,
                student.payee_id,
                credit.instrument_id,
                name,
                makeup_id=credit.id,
            )
        )
    lessons.sort(key=lambda lesson: (lesson.day, lesson.start_minute, lesson.student))
    return lessons


def _covering(session: Session, substitute_id: int, first: date, last: date) -> list[TimeOff]:
    """The time off `substitute_id` substitutes in, overlapping `first`..`last`."""
    return [row for row in overlapping(session, first, last) if row.substitute_id == substitute_id]


def _conflicts(session: Session, lessons: list[AwayLesson], substitute: Teacher, first: date, last: date) -> list[str]:
    """Why `substitute` cannot teach `lessons`: an instrument they do not teach, a time they teach
    (their own lessons and make-ups, holds included; lessons they already cover), or away."""
    taught = set(session.exec(select(TeacherInstrument.instrument_id).where(TeacherInstrument.teacher_id == substitute.id)).all())
    busy = {
        (lesson.day, lesson.start_minute): lesson for lesson in teacher_lessons(session, substitute.id, first, last, holds=True)
    }
    away: list[TimeOff] = overlapping(session, first, last, teacher_id=substitute.id)
    for other in _covering(session, substitute.id, first, last):
        start, end = max(first, other.starts_on), min(last, other.ends_on)
        for lesson in teacher_lessons(session, other.teacher_id, start, end, holds=True):
            busy.setdefault((lesson.day, lesson.start_minute), lesson)
    problems = []
    for lesson in lessons:
        if lesson.instrument_id is not None and lesson.instrument_id not in taught:
            problems.append(f"{lesson.label}: {substitute.name} does not teach {lesson.instrument}")
        clash = busy.get((lesson.day, lesson.start_minute))
        if clash is not None:
            problems.append(f"{lesson.label}: {substitute.name} teaches {clash.student} then")
        for row in away:
            if row.starts_on <= lesson.day <= row.ends_on:
                problems.append(f"{lesson.label}: {substitute.name} is away then (time off {row.id})")
    return problems


def add_time_off(
    session: Session,
    *,
    teacher: str | int,
    starts_on: date,
    ends_on: date,
    substitute: str | int | None = None,
    reason: str | None = None,
    actor: str,
) -> TimeOffResult:
    """Record that `teacher` is away from `starts_on` to `ends_on` (both included, from today on)
    and cancel or cover their lessons then (see the module). Overlapping time off of the same
    teacher, or a substitute with conflicts, is refused and nothing is written."""
    away = get_teacher(session, teacher)
    cover = get_teacher(session, substitute) if substitute is not None else None
    today = studio_today()
    if ends_on < starts_on:
        raise Invalid(f"the last day ({ends_on}) is before the first ({starts_on})", field="to")
    if starts_on < today:
        raise Invalid(f"time off starts today ({today}) or later; mark past lessons with `attendance mark`", field="from")
    if (ends_on - starts_on).days >= MAX_DAYS:
        raise Invalid(f"at most {MAX_DAYS} days of time off at a time", field="to")
    if cover is not None and cover.id == away.id:
        raise Invalid(f"{away.name} cannot substitute for themself", field="substitute")
    if cover is not None and not cover.active:
        raise Invalid(f"{cover.name} is deactivated and cannot substitute", field="substitute")
    reason = reason.strip() if reason and reason.strip() else None
    if reason is not None and len(reason) > MAX_REASON:
        raise Invalid(f"the reason is longer than {MAX_REASON} characters", field="reason")
    if reason is not None and any(char < " " or char == "\x7f" for char in reason):
        raise Invalid(f"the reason cannot hold control characters: {reason!r}", field="reason")
    # Both teachers' rows locked, in id order: two time offs involving them are written one at a time.
    for teacher_id in sorted({away.id} | ({cover.id} if cover else set())):
        lock_row(session, Teacher, teacher_id)
    if already := overlapping(session, starts_on, ends_on, teacher_id=away.id):
        row = already[0]
        raise Conflict(f"{away.name} is already away from {row.starts_on} to {row.ends_on} (time off {row.id})")
    if covering := _covering(session, away.id, starts_on, ends_on):
        row = covering[0]
        raise Conflict(f"{away.name} substitutes from {row.starts_on} to {row.ends_on} (time off {row.id}); remove that first")
    lessons = teacher_lessons(session, away.id, starts_on, ends_on)
    if cover is not None:
        problems = _conflicts(session, lessons, cover, starts_on, ends_on)
        if problems:
            raise Conflict(f"{cover.name} cannot substitute for {away.name}: " + "; ".join(problems), field="substitute")
    row = TimeOff(
        teacher_id=away.id, starts_on=starts_on, ends_on=ends_on, substitute_id=cover.id if cover else None, reason=reason
    )
    session.add(row)
    session.flush()
    record_audit(session, actor=actor, action="time_off.add", entity=row, after=snapshot(row))
    if cover is None:
        for lesson in lessons:
            cancel_away_lesson(session, row, lesson, actor=actor)
        return TimeOffResult(row, cancelled=lessons, covered=[])
    for lesson in lessons:
        if lesson.makeup_id is not None:
            credit = session.get(MakeUp, lesson.makeup_id)
            change_audited(session, credit, actor=actor, action="makeup.substitute", taught_by_id=cover.id)
    _notify_families(session, row, away, cover, lessons)
    return TimeOffResult(row, cancelled=[], covered=lessons)


def cancel_away_lesson(session: Session, row: TimeOff, lesson: AwayLesson, *, actor: str) -> None:
    """Cancel one lesson of a time off without a substitute: a weekly one is marked
    `teacher_cancelled` (credit, invite), a booked make-up is un-booked and its family invited."""
    why = f"teacher away{f': {row.reason}' if row.reason else ''} (time off {row.id})"
    if lesson.enrollment_id is not None:
        mark_attendance(
            session, enrollment_id=lesson.enrollment_id, lesson_date=lesson.day, status=TEACHER_CANCELLED, note=why, actor=actor
        )
        return
    credit = cancel_makeup(session, session.get(MakeUp, lesson.makeup_id), actor=actor)
    queue_makeup_email(session, credit, "make_up_invite", dedupe_key=f"make_up_invite:{credit.id}:time_off:{row.id}")


def _notify_families(session: Session, row: TimeOff, away: Teacher, cover: Teacher, lessons: list[AwayLesson]) -> None:
    """One `substitute_notice` per family with lessons in the time off, listing them."""
    by_family: dict[int, list[AwayLesson]] = {}
    for lesson in lessons:
        by_family.setdefault(lesson.payee_id, []).append(lesson)
    for payee_id, theirs in by_family.items():
        payee = session.get(Payee, payee_id)
        context = {
            "studio_name": get_settings().STUDIO_NAME,
            "timezone": get_settings().STUDIO_TIMEZONE,
            "time_off_id": row.id,
            "payee_name": payee.name,
            "teacher_name": away.name,
            "substitute_name": cover.name,
            "starts_on": row.starts_on.isoformat(),
            "ends_on": row.ends_on.isoformat(),
            "student_names": " and ".join(sorted({lesson.student for lesson in theirs})),
            "lessons": [
                {
                    "date": lesson.day.isoformat(),
                    "weekday": weekday_label(lesson.day.weekday()),
                    "time": format_minute(lesson.start_minute),
                    "student_name": lesson.student,
                    "instrument": lesson.instrument,
                    "makeup": lesson.makeup_id is not None,
                }
                for lesson in theirs
            ],
        }
        key = f"substitute_notice:{row.id}:{payee_id}"
        queue_email(session, template="substitute_notice", recipient=payee.email, context=context, dedupe_key=key)


def get_time_off(session: Session, time_off_id: int) -> TimeOff:
    """A time off by id, or NotFound."""
    row = session.get(TimeOff, time_off_id)
    if row is None:
        raise NotFound(f"no time off {time_off_id}", field="time_off_id")
    return row


def list_time_off(session: Session, *, teacher: str | int | None = None, include_past: bool = False) -> list[TimeOff]:
    """Time off by start date: not yet over (with `include_past`, all), of one teacher or all."""
    statement = select(TimeOff)
    if teacher is not None:
        statement = statement.where(TimeOff.teacher_id == get_teacher(session, teacher).id)
    if not include_past:
        statement = statement.where(TimeOff.ends_on >= studio_today())
    return list(session.exec(statement.order_by(col(TimeOff.starts_on), col(TimeOff.id))).all())


def time_off_view(session: Session, row: TimeOff) -> dict:
    """A time off as the CLI shows it (JSON-safe)."""
    teacher = session.get(Teacher, row.teacher_id)
    substitute = session.get(Teacher, row.substitute_id) if row.substitute_id else None
    return {
        "id": row.id,
        "teacher": teacher.email,
        "teacher_name": teacher.name,
        "from": row.starts_on.isoformat(),
        "to": row.ends_on.isoformat(),
        "substitute": substitute.email if substitute else None,
        "substitute_name": substitute.name if substitute else None,
        "reason": row.reason,
    }


def remove_time_off(session: Session, time_off_id: int, *, actor: str) -> TimeOff:
    """Remove a time off that has not begun (see the module): one with a substitute gives its
    make-ups (and any mark made ahead) back to the slot's teacher; one without a substitute that
    cancelled lessons is refused, as is one that has begun (it is what happened)."""
    row = lock_row(session, TimeOff, time_off_id)
    if row is None:
        raise NotFound(f"no time off {time_off_id}", field="time_off_id")
    if row.starts_on <= studio_today():
        raise Conflict(f"time off {row.id} began on {row.starts_on}: it stays on record")
    slot_ids = select(Timeslot.id).where(Timeslot.teacher_id == row.teacher_id)
    enrollment_ids = select(Enrollment.id).where(col(Enrollment.timeslot_id).in_(slot_ids))
    in_range = (col(Attendance.lesson_date) >= row.starts_on, col(Attendance.lesson_date) <= row.ends_on)
    marks = session.exec(select(Attendance).where(col(Attendance.enrollment_id).in_(enrollment_ids), *in_range)).all()
    if row.substitute_id is None:
        cancelled = [mark for mark in marks if mark.status == TEACHER_CANCELLED]
        if cancelled:
            raise Conflict(
                f"time off {row.id} cancelled {len(cancelled)} lesson(s) and the families hold make-up credits for them; "
                "it cannot be removed (`attendance mark` a lesson that takes place after all)"
            )
    else:
        for mark in marks:
            if mark.taught_by_id == row.substitute_id:
                change_audited(session, mark, actor=actor, action="attendance.mark", taught_by_id=None)
        for credit in session.exec(
            select(MakeUp).where(
                col(MakeUp.timeslot_id).in_(slot_ids),
                MakeUp.taught_by_id == row.substitute_id,
                MakeUp.lesson_date >= row.starts_on,
                MakeUp.lesson_date <= row.ends_on,
            )
        ).all():
            change_audited(session, credit, actor=actor, action="makeup.substitute", taught_by_id=None)
    record_audit(session, actor=actor, action="time_off.remove", entity=row, before=snapshot(row))
    session.delete(row)
    session.flush()
    return row
