"""Attendance and make-up credits.

Marking a lesson `excused` or `teacher_cancelled` earns the student one make-up credit
(expiring at the make-up window's end) and queues `make_up_invite`; `no_show` earns
nothing and queues `no_show_notice`. Re-marking keeps the credit consistent: a credit
not yet used disappears when the mark no longer earns it. A mark on a date the slot's
teacher is away with a substitute records who taught (`taught_by_id`, `models.time_off`).
A credit is booked onto a free slot-date: no live enrollment's lesson (one its family called
off is free), no other make-up (a partial unique index makes the database refuse two), not a
closure, not a date its teacher is away or covers for one, inside the window.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit, snapshot
from models.base import enum_check, utc_column, utcnow
from models.clock import format_minute, studio_today, weekday_label
from models.config import get_settings
from models.db import lock_row
from models.enrollment import (
    LIVE_STATUSES,
    TAUGHT_STATUSES,
    Enrollment,
    email_context,
    get_enrollment,
    is_occurrence,
    lesson_end,
    payee_of,
)
from models.errors import Conflict, Invalid, NotFound, SlotTaken
from models.outbox import queue_email
from models.people import Payee, Student, Teacher, TeacherInstrument, get_instrument, get_student
from models.scheduling import Semester, SemesterClosure, Timeslot, current_or_next_semester, semester_on, slot_dates
from models.time_off import substitute_on, unavailable_slot_dates

PRESENT, EXCUSED, NO_SHOW, TEACHER_CANCELLED = "present", "excused", "no_show", "teacher_cancelled"
# The family called the lesson off later than the make-up notice allows: no credit.
LATE_CANCEL = "late_cancel"
ATTENDANCE_STATUSES = (PRESENT, EXCUSED, NO_SHOW, TEACHER_CANCELLED, LATE_CANCEL)
EARNS_MAKEUP = (EXCUSED, TEACHER_CANCELLED)
# A lesson its family called off leaves its slot-date free for someone's make-up.
FREES_SLOT_DATE = (EXCUSED, LATE_CANCEL)

# A make-up credit:  available ──> booked ──> used (its date passed)
#                      │    ^        │
#                      │    └────────┤ un-booked (`cancel_makeup`)
#                      v             v
#                    expired <───────┘ (window over; un-booked after it ended)
AVAILABLE, BOOKED, USED, EXPIRED = "available", "booked", "used", "expired"
MAKEUP_STATUSES = (AVAILABLE, BOOKED, USED, EXPIRED)
# A booked or used make-up owns its slot-date (a partial unique index: one per slot-date).
TAKEN_STATUSES = (BOOKED, USED)
_TAKEN_SQL = "status IN ('booked', 'used')"


class Attendance(SQLModel, table=True):
    """What happened at one lesson of an enrollment."""

    __table_args__ = (
        sa.UniqueConstraint("enrollment_id", "lesson_date"),
        enum_check("status", ATTENDANCE_STATUSES, "status_known"),
    )

    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True, ondelete="CASCADE")
    lesson_date: date = Field(index=True)
    status: str = Field(max_length=20)
    note: str | None = Field(default=None, max_length=500)
    taught_by_id: int | None = Field(default=None, foreign_key="teacher.id", ondelete="RESTRICT")  # a substitute
    marked_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class MakeUp(SQLModel, table=True):
    """A make-up credit: earned by an excused/teacher-cancelled lesson or granted by the admin."""

    __tablename__ = "makeup"
    __table_args__ = (
        enum_check("status", MAKEUP_STATUSES, "status_known"),
        sa.CheckConstraint(
            "status NOT IN ('booked', 'used') OR (timeslot_id IS NOT NULL AND lesson_date IS NOT NULL)", name="booked_has_slot"
        ),
        sa.Index(
            "uq_makeup_taken_slot_date",
            "timeslot_id",
            "lesson_date",
            unique=True,
            postgresql_where=sa.text(_TAKEN_SQL),
            sqlite_where=sa.text(_TAKEN_SQL),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    student_id: int = Field(foreign_key="student.id", index=True, ondelete="RESTRICT")
    origin_attendance_id: int | None = Field(
        default=None, foreign_key="attendance.id", ondelete="SET NULL", sa_column_kwargs={"unique": True}
    )
    instrument_id: int | None = Field(default=None, foreign_key="instrument.id", ondelete="RESTRICT")
    reason: str | None = Field(default=None, max_length=500)
    status: str = Field(default=AVAILABLE, max_length=16, index=True)
    timeslot_id: int | None = Field(default=None, foreign_key="timeslot.id", ondelete="RESTRICT")
    lesson_date: date | None = None
    taught_by_id: int | None = Field(default=None, foreign_key="teacher.id", ondelete="RESTRICT")  # a substitute
    expires_on: date
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


# Attendance ----------------------------------------------------------------------------


def _window_for(session: Session, day: date) -> Semester | None:
    return semester_on(session, day) or current_or_next_semester(session, day)


def _new_credit(
    session: Session, *, student_id: int, instrument_id: int | None, origin: Attendance | None, reason: str, day: date, actor: str
) -> MakeUp:
    semester = _window_for(session, day)
    if semester is None:
        raise Invalid("no semester (make-up window) to grant the credit in", field="date")
    credit = MakeUp(
        student_id=student_id,
        instrument_id=instrument_id,
        reason=reason,
        origin_attendance_id=origin.id if origin else None,
        expires_on=semester.makeup_ends_on,
    )
    session.add(credit)
    session.flush()
    record_audit(session, actor=actor, action="makeup.grant", entity=credit, after=snapshot(credit))
    queue_makeup_email(session, credit, "make_up_invite", dedupe_key=f"make_up_invite:{credit.id}")
    return credit


def mark_attendance(
    session: Session, *, enrollment_id: int, lesson_date: date, status: str, note: str | None = None, actor: str, earn=True
) -> tuple[Attendance, MakeUp | None]:
    """Mark (or re-mark) one lesson; returns the row and the make-up credit it now carries, if any.
    `earn=False`: no new credit (the make-up policy's cap, `models.absences`, says there is none left)."""
    if status not in ATTENDANCE_STATUSES:
        raise Invalid(f"status must be one of {', '.join(ATTENDANCE_STATUSES)}", field="status")
    enrollment = get_enrollment(session, enrollment_id)
    if enrollment.status not in TAUGHT_STATUSES:
        raise Conflict(f"enrollment {enrollment.id} is {enrollment.status}; only booked lessons take attendance")
    if not is_occurrence(session, enrollment, lesson_date):
        raise Invalid(f"{lesson_date} is not a lesson of enrollment {enrollment.id}", field="date")
    row = session.exec(
        select(Attendance).where(Attendance.enrollment_id == enrollment.id, Attendance.lesson_date == lesson_date)
    ).first()
    before = snapshot(row) if row else None
    credit = session.exec(select(MakeUp).where(MakeUp.origin_attendance_id == row.id)).first() if row else None
    taught_by = substitute_on(session, session.get(Timeslot, enrollment.timeslot_id).teacher_id, lesson_date)  # time off
    if row is None:
        row = Attendance(enrollment_id=enrollment.id, lesson_date=lesson_date, status=status, note=note, taught_by_id=taught_by)
    else:
        if row.status == status and (note is None or note == row.note):
            return row, credit
        if credit is not None and status not in EARNS_MAKEUP and credit.status in TAKEN_STATUSES:
            raise Conflict(f"make-up {credit.id} earned by this lesson is {credit.status}; cancel it first")
        row.status, row.marked_at, row.taught_by_id = status, utcnow(), taught_by
        if note is not None:
            row.note = note
    session.add(row)
    session.flush()
    record_audit(session, actor=actor, action="attendance.mark", entity=row, before=before, after=snapshot(row))
    if status in EARNS_MAKEUP and credit is None and earn:
        credit = _new_credit(
            session,
            student_id=enrollment.student_id,
            instrument_id=enrollment.instrument_id,
            origin=row,
            reason=f"{status.replace('_', ' ')} on {lesson_date}",
            day=lesson_date,
            actor=actor,
        )
    elif status not in EARNS_MAKEUP and credit is not None:
        record_audit(session, actor=actor, action="makeup.revoke", entity=credit, before=snapshot(credit))
        session.delete(credit)
        session.flush()
        credit = None
    if status == NO_SHOW:
        payee = payee_of(session, enrollment)
        context = email_context(session, enrollment) | {"lesson_date": lesson_date.isoformat()}
        queue_email(
            session, template="no_show_notice", recipient=payee.email, context=context, dedupe_key=f"no_show_notice:{row.id}"
        )
    return row, credit


# Make-ups ------------------------------------------------------------------------------


def _makeup_context(session: Session, credit: MakeUp) -> dict:
    settings = get_settings()
    student = session.get(Student, credit.student_id)
    payee = session.get(Payee, student.payee_id)
    context = {
        "studio_name": settings.STUDIO_NAME,
        "timezone": settings.STUDIO_TIMEZONE,
        "makeup_id": credit.id,
        "payee_name": payee.name,
        "student_name": student.name,
        "reason": credit.reason,
        "expires_on": credit.expires_on.isoformat(),
        "lesson_date": None,
        "time": None,
        "teacher_name": None,
        "weekday": None,
    }
    if credit.timeslot_id:
        slot = session.get(Timeslot, credit.timeslot_id)
        teacher = session.get(Teacher, slot.teacher_id)
        context |= {
            "lesson_date": credit.lesson_date.isoformat(),
            "time": format_minute(slot.start_minute),
            "teacher_name": teacher.name,
            "weekday": weekday_label(slot.weekday),
        }
    return context


def queue_makeup_email(session: Session, credit: MakeUp, template: str, *, dedupe_key: str) -> None:
    """Queue `template` (`make_up_invite`, `make_up_confirmation`) about `credit` to its family."""
    payee = session.get(Payee, session.get(Student, credit.student_id).payee_id)
    queue_email(
        session, template=template, recipient=payee.email, context=_makeup_context(session, credit), dedupe_key=dedupe_key
    )


def get_makeup(session: Session, makeup_id: int, *, payee_id: int | None = None) -> MakeUp:
    """A make-up credit by id; with `payee_id`, only that family's (others are NotFound)."""
    credit = session.get(MakeUp, makeup_id)
    if credit is not None and payee_id is not None and session.get(Student, credit.student_id).payee_id != payee_id:
        credit = None
    if credit is None:
        raise NotFound(f"no make-up {makeup_id}", field="makeup_id")
    return credit


def grant_makeup(session: Session, *, student_id: int, reason: str, instrument: str | None = None, actor: str) -> MakeUp:
    """The admin grants a credit by hand (expires at the current or next make-up window's end)."""
    student = get_student(session, student_id)
    if not reason.strip():
        raise Invalid("a reason is needed", field="reason")
    instrument_id = None
    if instrument:
        instrument_id = get_instrument(session, instrument).id
    else:
        last = session.exec(select(Enrollment).where(Enrollment.student_id == student.id).order_by(Enrollment.id.desc())).first()
        instrument_id = last.instrument_id if last else None
    return _new_credit(
        session,
        student_id=student.id,
        instrument_id=instrument_id,
        origin=None,
        reason=reason.strip(),
        day=studio_today(),
        actor=actor,
    )


def makeup_window(session: Session, credit: MakeUp, today: date) -> tuple[date, date] | None:
    """The dates `credit` may be booked on from `today` (tomorrow at the earliest), or None."""
    semester = session.exec(select(Semester).where(Semester.makeup_ends_on == credit.expires_on)).first()
    first = max(today + timedelta(days=1), semester.makeup_starts_on if semester else today)
    last = min(credit.expires_on, semester.makeup_ends_on if semester else credit.expires_on)
    return (first, last) if first <= last else None


def taken_slot_dates(session: Session, slot_ids: list[int], first: date, last: date) -> set[tuple[int, date]]:
    """The (slot, date) pairs from `first` to `last` a make-up cannot take: another make-up's, or
    a live booking's lesson (one its family called off, FREES_SLOT_DATE, is free for a make-up),
    or a date its teacher is away or covers for an absent one (`models.time_off`)."""
    made_up = select(MakeUp.timeslot_id, MakeUp.lesson_date).where(MakeUp.status.in_(TAKEN_STATUSES))
    taken = set(session.exec(made_up.where(MakeUp.lesson_date >= first, MakeUp.lesson_date <= last)).all())
    closures = set(session.exec(select(SemesterClosure.closed_on)).all())
    live = select(Enrollment).where(Enrollment.status.in_(LIVE_STATUSES), Enrollment.timeslot_id.in_(slot_ids))
    called_off = select(Attendance.enrollment_id, Attendance.lesson_date).where(
        Attendance.status.in_(FREES_SLOT_DATE), Attendance.lesson_date >= first, Attendance.lesson_date <= last
    )
    free = set(session.exec(called_off.where(Attendance.enrollment_id.in_(live.with_only_columns(Enrollment.id)))).all())
    for enrollment in session.exec(live).all():
        end = lesson_end(session, enrollment) or last
        slot = session.get(Timeslot, enrollment.timeslot_id)
        for day in slot_dates(slot.weekday, max(first, enrollment.start_date), min(last, end), closures):
            if (enrollment.id, day) not in free:
                taken.add((slot.id, day))
    slots = list(session.exec(select(Timeslot).where(Timeslot.id.in_(slot_ids))).all())
    return taken | unavailable_slot_dates(session, slots, first, last)


def eligible_makeup_slots(
    session: Session, credit: MakeUp, *, today: date | None = None, limit: int = 200
) -> list[tuple[Timeslot, date]]:
    """Free slot-dates where `credit` can be used: inside the window, a teacher who teaches the
    instrument, no lesson or other make-up there, not a closure. Sorted by date and time."""
    if credit.status != AVAILABLE:
        return []
    today = today or studio_today()
    window = makeup_window(session, credit, today)
    if window is None:
        return []
    first, last = window
    statement = (
        select(Timeslot)
        .join(Teacher, Teacher.id == Timeslot.teacher_id)
        .where(Timeslot.active.is_(True), Teacher.active.is_(True))
    )
    if credit.instrument_id is not None:
        statement = statement.join(TeacherInstrument, TeacherInstrument.teacher_id == Teacher.id).where(
            TeacherInstrument.instrument_id == credit.instrument_id
        )
    slots = list(session.exec(statement).all())
    taken = taken_slot_dates(session, [slot.id for slot in slots], first, last)
    closures = set(session.exec(select(SemesterClosure.closed_on)).all())
    options = [
        (slot, day) for slot in slots for day in slot_dates(slot.weekday, first, last, closures) if (slot.id, day) not in taken
    ]
    options.sort(key=lambda option: (option[1], option[0].start_minute, option[0].id))
    return options[:limit]


def book_makeup(session: Session, credit: MakeUp, *, timeslot_id: int, lesson_date: date, actor: str) -> MakeUp:
    """Book a credit onto a slot-date; SlotTaken when someone just took it.

    The credit's row is re-read under its lock, so two requests booking one credit at once
    book it once (the second sees it `booked`); the slot's row lock serialises this with
    other make-ups and with enrollments on the slot.
    """
    credit = lock_row(session, MakeUp, credit.id)
    if credit.status != AVAILABLE:
        raise Conflict(f"make-up {credit.id} is {credit.status}, not available")
    slot = lock_row(session, Timeslot, timeslot_id)
    if slot is None:
        raise NotFound(f"no timeslot {timeslot_id}", field="timeslot_id")
    today = studio_today()
    window = makeup_window(session, credit, today)
    if window is None or not window[0] <= lesson_date <= window[1]:
        raise Invalid(f"{lesson_date} is outside this make-up's window", field="date")
    if lesson_date.weekday() != slot.weekday:
        raise Invalid(f"{lesson_date} is not a {weekday_label(slot.weekday)}", field="date")
    teacher = session.get(Teacher, slot.teacher_id)
    if not slot.active or not teacher.active:
        raise Invalid(f"timeslot {slot.id} is not open", field="timeslot_id")
    if credit.instrument_id is not None and session.get(TeacherInstrument, (teacher.id, credit.instrument_id)) is None:
        raise Invalid(f"{teacher.name} does not teach this make-up's instrument", field="timeslot_id")
    if session.exec(select(SemesterClosure).where(SemesterClosure.closed_on == lesson_date)).first():
        raise Invalid(f"the studio is closed on {lesson_date}", field="date")
    if (slot.id, lesson_date) in taken_slot_dates(session, [slot.id], lesson_date, lesson_date):
        raise SlotTaken(f"timeslot {slot.id} on {lesson_date} is taken")
    before = snapshot(credit)
    credit.status, credit.timeslot_id, credit.lesson_date, credit.updated_at = BOOKED, slot.id, lesson_date, utcnow()
    try:
        with session.begin_nested():
            session.add(credit)
            session.flush()
    except sa.exc.IntegrityError:
        raise SlotTaken(f"timeslot {slot.id} on {lesson_date} is taken") from None
    record_audit(session, actor=actor, action="makeup.book", entity=credit, before=before, after=snapshot(credit))
    queue_makeup_email(session, credit, "make_up_confirmation", dedupe_key=f"make_up_confirmation:{credit.id}:{lesson_date}")
    return credit


def cancel_makeup(session: Session, credit: MakeUp, *, actor: str) -> MakeUp:
    """Un-book a booked make-up; the credit is available again (until it expires)."""
    credit = lock_row(session, MakeUp, credit.id)
    if credit.status != BOOKED:
        raise Conflict(f"make-up {credit.id} is {credit.status}, not booked")
    return change_audited(
        session,
        credit,
        actor=actor,
        action="makeup.cancel",
        status=AVAILABLE if credit.expires_on >= studio_today() else EXPIRED,
        timeslot_id=None,
        lesson_date=None,
        taught_by_id=None,
        updated_at=utcnow(),
    )


def expire_makeup_credits(session: Session, *, today: date | None = None, actor: str = "worker") -> tuple[int, int]:
    """Daily: available credits past their expiry → expired; booked ones whose date passed → used.
    Returns (expired, used). Safe to run twice."""
    today = today or studio_today()
    expired = used = 0
    for credit in session.exec(select(MakeUp).where(MakeUp.status == AVAILABLE, MakeUp.expires_on < today)).all():
        change_audited(session, credit, actor=actor, action="makeup.expire", status=EXPIRED, updated_at=utcnow())
        expired += 1
    for credit in session.exec(select(MakeUp).where(MakeUp.status == BOOKED, MakeUp.lesson_date < today)).all():
        change_audited(session, credit, actor=actor, action="makeup.use", status=USED, updated_at=utcnow())
        used += 1
    return expired, used
