"""Make-up slots announced (issue 14): a lesson date a family called off is free for someone
else's make-up, and the families that hold a credit to use are told, at most once a day.

A lesson marked `excused` or `late_cancel` (`models.attendance.FREES_SLOT_DATE`: the family's
absence report or the admin's mark) leaves its slot-date bookable as a make-up. The hourly job
`announce_makeup_slots` gathers the dates freed since a family was last told and sends each
family whose students hold an available credit that fits one (the teacher teaches the credit's
instrument, the date is in its window and still free) one `makeup_slots_available` email listing
them, under the dedupe key `makeup-slots:<payee id>:<studio date>`: a second freeing the same day
waits for the next day's email (if the date is still free then). A family is never told of a
date its own student freed. The booking itself is the ordinary make-up booking
(`models.attendance.book_makeup`): the slot's row lock and the unique slot-date index let the
first family to book win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from models.attendance import AVAILABLE, FREES_SLOT_DATE, Attendance, MakeUp, makeup_window, taken_slot_dates
from models.base import utcnow
from models.clock import format_minute, studio_today, weekday_label
from models.config import get_settings
from models.enrollment import LIVE_STATUSES, Enrollment
from models.outbox import EmailLog, queue_email
from models.people import Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Timeslot

TEMPLATE = "makeup_slots_available"


@dataclass(frozen=True)
class Opening:
    """A lesson date its family called off: free for a make-up from `freed_at`."""

    timeslot_id: int
    lesson_date: date
    freed_at: datetime
    student_id: int  # whose lesson it was (their family is not told of it)


def dedupe_key(payee_id: int, day: date) -> str:
    """The one announcement a family may get on studio date `day`."""
    return f"makeup-slots:{payee_id}:{day.isoformat()}"


def freed_slot_dates(session: Session, *, after: date) -> list[Opening]:
    """Lessons of live bookings dated after `after` that their families called off."""
    statement = (
        select(col(Enrollment.timeslot_id), col(Attendance.lesson_date), col(Attendance.marked_at), col(Enrollment.student_id))
        .join(Enrollment, col(Enrollment.id) == col(Attendance.enrollment_id))
        .where(
            col(Attendance.status).in_(FREES_SLOT_DATE),
            col(Attendance.lesson_date) > after,
            col(Enrollment.status).in_(LIVE_STATUSES),
        )
        .order_by(col(Attendance.lesson_date), col(Enrollment.timeslot_id))
    )
    return [Opening(*row) for row in session.exec(statement).all()]


def _last_told(session: Session, payee_id: int) -> datetime | None:
    """When the family's latest announcement was queued (None: never)."""
    return session.exec(
        select(func.max(EmailLog.created_at)).where(
            col(EmailLog.template) == TEMPLATE, col(EmailLog.dedupe_key).startswith(f"makeup-slots:{payee_id}:")
        )
    ).one()


def _fits(session: Session, credit: MakeUp, window: tuple[date, date] | None, opening: Opening) -> bool:
    """Whether `credit` (bookable in `window`) may be booked on the opening (window, open slot,
    teacher of its instrument)."""
    if window is None or not window[0] <= opening.lesson_date <= window[1]:
        return False
    slot = session.get(Timeslot, opening.timeslot_id)
    teacher = session.get(Teacher, slot.teacher_id) if slot else None
    if slot is None or teacher is None or not (slot.active and teacher.active):
        return False
    return credit.instrument_id is None or session.get(TeacherInstrument, (teacher.id, credit.instrument_id)) is not None


def _date_view(session: Session, opening: Opening, students: list[str], makeup_ids: list[int]) -> dict:
    slot = session.get(Timeslot, opening.timeslot_id)
    teacher = session.get(Teacher, slot.teacher_id)
    return {
        "timeslot_id": slot.id,
        "date": opening.lesson_date.isoformat(),
        "weekday": weekday_label(slot.weekday),
        "time": format_minute(slot.start_minute),
        "teacher_name": teacher.name,
        "students": students,
        "makeup_ids": makeup_ids,
    }


def announce_makeup_slots(session: Session, *, now: datetime | None = None) -> dict[int, list[str]]:
    """Queue today's `makeup_slots_available` for every family with news (see the module);
    returns {payee id: the dates announced}. Safe to run again: a family told today is skipped,
    and a run elsewhere queueing the same key a moment ago is refused by its uniqueness."""
    now = now or utcnow()
    today = studio_today(now)
    openings = freed_slot_dates(session, after=today)
    if not openings:
        return {}
    taken = taken_slot_dates(
        session,
        sorted({opening.timeslot_id for opening in openings}),
        min(opening.lesson_date for opening in openings),
        max(opening.lesson_date for opening in openings),
    )
    openings = [opening for opening in openings if (opening.timeslot_id, opening.lesson_date) not in taken]
    holders = session.exec(
        select(MakeUp, Student)
        .join(Student, col(Student.id) == col(MakeUp.student_id))
        .where(col(MakeUp.status) == AVAILABLE, col(MakeUp.expires_on) > today, col(Student.archived_at).is_(None))
        .order_by(col(Student.payee_id), col(MakeUp.id))
    ).all()
    families: dict[int, list[tuple[MakeUp, Student]]] = {}
    windows: dict[int | None, tuple[date, date] | None] = {}  # a credit's window is the same for every opening
    for credit, student in holders:
        families.setdefault(student.payee_id, []).append((credit, student))
        windows[credit.id] = makeup_window(session, credit, today)
    announced: dict[int, list[str]] = {}
    for payee_id, credits in families.items():
        key = dedupe_key(payee_id, today)
        if session.exec(select(EmailLog.id).where(col(EmailLog.dedupe_key) == key)).first() is not None:
            continue
        own = set(session.exec(select(Student.id).where(col(Student.payee_id) == payee_id)).all())
        last = _last_told(session, payee_id)
        dates = []
        for opening in openings:
            if opening.student_id in own or (last is not None and opening.freed_at <= last):
                continue
            fitting = [(credit, student) for credit, student in credits if _fits(session, credit, windows[credit.id], opening)]
            if fitting:
                names = sorted({student.name for _, student in fitting})
                dates.append(_date_view(session, opening, names, [credit.id for credit, _ in fitting]))
        if dates and _queue(session, session.get(Payee, payee_id), key, dates):
            announced[payee_id] = [view["date"] for view in dates]
    return announced


def _queue(session: Session, payee: Payee, key: str, dates: list[dict]) -> bool:
    settings = get_settings()
    context = {
        "studio_name": settings.STUDIO_NAME,
        "timezone": settings.STUDIO_TIMEZONE,
        "payee_name": payee.name,
        "student_names": sorted({name for view in dates for name in view["students"]}),
        "dates": dates,
    }
    try:  # in a savepoint: another run's row under the same key is nothing more to send
        with session.begin_nested():
            return queue_email(session, template=TEMPLATE, recipient=payee.email, context=context, dedupe_key=key) is not None
    except sa.exc.IntegrityError:
        return False
