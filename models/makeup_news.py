"""Make-up slots announced (issue 14): a lesson date a family called off is free for someone
else's make-up, and the families that hold a credit to use are told, at most once a day.

A lesson marked `excused` or `late_cancel` (`models.attendance.FREES_SLOT_DATE`: the family's
absence report or the admin's mark) leaves its slot-date bookable as a make-up, and so does a
booked make-up given up again (un-booked). The hourly job
`announce_makeup_slots` gathers the dates freed since a family was last told and sends each
family whose students hold an available credit that fits one (the teacher teaches the credit's
instrument, the date is in its window and still free) one `makeup_slots_available` email listing
them, under the dedupe key `makeup-slots:<payee id>:<studio date>` (and, for a family that reads
texts, a `makeup_slots_available` SMS naming the first date, keyed `…:sms`): a second freeing the
same day waits for the next day's message (if the date is still free then). A family is never told of a
date its own student freed. The booking itself is the ordinary make-up booking
(`models.attendance.book_makeup`): the slot's row lock and the unique slot-date index let the
first family to book win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.attendance import AVAILABLE, FREES_SLOT_DATE, Attendance, MakeUp, makeup_window, taken_slot_dates
from models.audit import AuditLog
from models.base import utcnow
from models.clock import format_minute, occurrence_start, studio_today, weekday_label
from models.config import get_settings
from models.enrollment import LIVE_STATUSES, Enrollment
from models.outbox import EmailLog, queue_email
from models.people import Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Timeslot
from models.sms import queue_sms

TEMPLATE = "makeup_slots_available"
UNBOOKED_ACTION = "makeup.cancel"  # models.attendance.cancel_makeup's audit action
UNBOOKED_LOOKBACK = timedelta(days=120)  # longer than any make-up window


@dataclass(frozen=True)
class Opening:
    """A lesson date its family called off: free for a make-up from `freed_at`."""

    timeslot_id: int
    lesson_date: date
    freed_at: datetime
    student_ids: tuple[int, ...]  # whose lesson or make-up it was (their families are not told of it)


def dedupe_key(payee_id: int, day: date) -> str:
    """The one announcement a family may get on studio date `day`."""
    return f"makeup-slots:{payee_id}:{day.isoformat()}"


def freed_slot_dates(session: Session, *, after: date, now: datetime | None = None) -> list[Opening]:
    """Slot-dates after `after` freed for a make-up: lessons of live bookings that their
    families called off, and make-ups un-booked (`models.attendance.cancel_makeup`: the audit
    row's before-state names the slot-date it gave up) in the last `UNBOOKED_LOOKBACK`."""
    statement = (
        select(col(Enrollment.timeslot_id), col(Attendance.lesson_date), col(Attendance.marked_at), col(Enrollment.student_id))
        .join(Enrollment, col(Enrollment.id) == col(Attendance.enrollment_id))
        .where(
            col(Attendance.status).in_(FREES_SLOT_DATE),
            col(Attendance.lesson_date) > after,
            col(Enrollment.status).in_(LIVE_STATUSES),
        )
    )
    freed = [(slot_id, day, at, student_id) for slot_id, day, at, student_id in session.exec(statement).all()]
    unbooked = select(col(AuditLog.before), col(AuditLog.created_at)).where(
        col(AuditLog.action) == UNBOOKED_ACTION, col(AuditLog.created_at) >= (now or utcnow()) - UNBOOKED_LOOKBACK
    )
    for before, unbooked_at in session.exec(unbooked).all():
        lesson_date = date.fromisoformat(before["lesson_date"]) if before and before.get("lesson_date") else None
        if lesson_date is not None and lesson_date > after and before.get("timeslot_id"):
            freed.append((before["timeslot_id"], lesson_date, unbooked_at, before["student_id"]))
    # One opening per slot-date, freed when it was last freed (a date called off, taken by a
    # make-up, then given up again is news again), never told to any family it came from.
    merged: dict[tuple[int, date], Opening] = {}
    for slot_id, day, at, student_id in freed:
        seen = merged.get((slot_id, day))
        if seen is None:
            merged[slot_id, day] = Opening(slot_id, day, at, (student_id,))
        else:
            merged[slot_id, day] = Opening(slot_id, day, max(seen.freed_at, at), (*seen.student_ids, student_id))
    return [merged[key] for key in sorted(merged)]


@dataclass(frozen=True)
class _Slot:
    """What an announcement says of a slot, and whether a make-up may go on it."""

    id: int
    weekday: int
    start_minute: int
    teacher_id: int
    teacher_name: str
    open: bool  # the slot and its teacher active
    instrument_ids: frozenset[int]


def _slots(session: Session, slot_ids: list[int]) -> dict[int, _Slot]:
    """The openings' slots with their teachers and what they teach: two statements."""
    rows = session.execute(
        sa.select(
            col(Timeslot.id),
            col(Timeslot.weekday),
            col(Timeslot.start_minute),
            col(Teacher.id),
            col(Teacher.name),
            col(Timeslot.active) & col(Teacher.active),
        )
        .join(Teacher, col(Teacher.id) == col(Timeslot.teacher_id))
        .where(col(Timeslot.id).in_(slot_ids))
    ).all()
    teaches: dict[int, set[int]] = {}
    teacher_ids = sorted({row[3] for row in rows})
    pairs = select(col(TeacherInstrument.teacher_id), col(TeacherInstrument.instrument_id))
    for teacher_id, instrument_id in session.exec(pairs.where(col(TeacherInstrument.teacher_id).in_(teacher_ids))).all():
        teaches.setdefault(teacher_id, set()).add(instrument_id)
    return {
        slot_id: _Slot(slot_id, weekday, minute, teacher_id, name, bool(is_open), frozenset(teaches.get(teacher_id, ())))
        for slot_id, weekday, minute, teacher_id, name, is_open in rows
    }


def _fits(credit: MakeUp, window: tuple[date, date] | None, opening: Opening, slot: _Slot | None) -> bool:
    """Whether `credit` (bookable in `window`) may be booked on the opening (window, open slot,
    teacher of its instrument)."""
    if window is None or not window[0] <= opening.lesson_date <= window[1]:
        return False
    if slot is None or not slot.open:
        return False
    return credit.instrument_id is None or credit.instrument_id in slot.instrument_ids


def _date_view(slot: _Slot, opening: Opening, students: list[str], makeup_ids: list[int]) -> dict:
    return {
        "timeslot_id": slot.id,
        "date": opening.lesson_date.isoformat(),
        "weekday": weekday_label(slot.weekday),
        "time": format_minute(slot.start_minute),
        "start_minute": slot.start_minute,
        "teacher_name": slot.teacher_name,
        "students": students,
        "makeup_ids": makeup_ids,
    }


def _last_told(session: Session, payee_ids: list[int], since: datetime) -> dict[int, datetime]:
    """When each family was last told, among the announcements queued since `since` (the
    earliest opening's freeing: an older one cannot hide an opening): one statement."""
    rows = session.exec(
        select(col(EmailLog.dedupe_key), col(EmailLog.created_at)).where(
            col(EmailLog.template) == TEMPLATE, col(EmailLog.created_at) >= since
        )
    ).all()
    wanted: set[int] = set(payee_ids)
    last: dict[int, datetime] = {}
    for key, created_at in rows:
        payee_id = int(key.split(":")[1])
        if payee_id in wanted and (payee_id not in last or created_at > last[payee_id]):
            last[payee_id] = created_at
    return last


def announce_makeup_slots(session: Session, *, now: datetime | None = None) -> dict[int, list[str]]:
    """Queue today's `makeup_slots_available` for every family with news (see the module);
    returns {payee id: the dates announced}. Safe to run again: a family told today is skipped,
    and a run elsewhere queueing the same key a moment ago is refused by its uniqueness. A
    constant number of statements whatever the number of families, but one insert per family told."""
    now = now or utcnow()
    today = studio_today(now)
    openings = freed_slot_dates(session, after=today, now=now)
    if not openings:
        return {}
    taken = taken_slot_dates(
        session,
        sorted({opening.timeslot_id for opening in openings}),
        min(opening.lesson_date for opening in openings),
        max(opening.lesson_date for opening in openings),
    )
    openings = [opening for opening in openings if (opening.timeslot_id, opening.lesson_date) not in taken]
    if not openings:
        return {}
    holders = session.exec(
        select(MakeUp, Student)
        .join(Student, col(Student.id) == col(MakeUp.student_id))
        .where(col(MakeUp.status) == AVAILABLE, col(MakeUp.expires_on) > today, col(Student.archived_at).is_(None))
        .order_by(col(Student.payee_id), col(MakeUp.id))
    ).all()
    families: dict[int, list[tuple[MakeUp, Student]]] = {}
    windows: dict[date, tuple[date, date] | None] = {}  # a credit's window depends on its expiry (and today) only
    for credit, student in holders:
        families.setdefault(student.payee_id, []).append((credit, student))
        if credit.expires_on not in windows:
            windows[credit.expires_on] = makeup_window(session, credit, today)
    if not families:
        return {}
    payee_ids = sorted(families)
    told_today = set(
        session.exec(
            select(col(EmailLog.dedupe_key)).where(col(EmailLog.dedupe_key).in_([dedupe_key(p, today) for p in payee_ids]))
        ).all()
    )
    last_told = _last_told(session, payee_ids, min(opening.freed_at for opening in openings))
    own: dict[int, set[int]] = {}
    for student_id, payee_id in session.exec(
        select(col(Student.id), col(Student.payee_id)).where(col(Student.payee_id).in_(payee_ids))
    ).all():
        own.setdefault(payee_id, set()).add(student_id)
    payees = {payee.id: payee for payee in session.exec(select(Payee).where(col(Payee.id).in_(payee_ids))).all()}
    slots = _slots(session, sorted({opening.timeslot_id for opening in openings}))
    announced: dict[int, list[str]] = {}
    for payee_id, credits in families.items():
        key = dedupe_key(payee_id, today)
        if key in told_today:
            continue
        last = last_told.get(payee_id)
        dates = []
        for opening in openings:
            if own.get(payee_id, set()) & set(opening.student_ids) or (last is not None and opening.freed_at <= last):
                continue
            slot = slots.get(opening.timeslot_id)
            fitting = [
                (credit, student) for credit, student in credits if _fits(credit, windows[credit.expires_on], opening, slot)
            ]
            if fitting:
                names = sorted({student.name for _, student in fitting})
                dates.append(_date_view(slot, opening, names, [credit.id for credit, _ in fitting]))
        if dates and _queue(session, payees[payee_id], key, dates):
            announced[payee_id] = [view["date"] for view in dates]
    return announced


def _queue(session: Session, payee: Payee, key: str, dates: list[dict]) -> bool:
    settings = get_settings()
    students = sorted({name for view in dates for name in view["students"]})
    context = {
        "studio_name": settings.STUDIO_NAME,
        "timezone": settings.STUDIO_TIMEZONE,
        "payee_name": payee.name,
        "student_names": students,
        "dates": dates,
    }
    try:  # in a savepoint: another run's row under the same key is nothing more to send
        with session.begin_nested():
            if queue_email(session, template=TEMPLATE, recipient=payee.email, context=context, dedupe_key=key) is None:
                return False
            if payee.remind_by_sms and payee.phone:  # the family reads texts: the first date by SMS too
                first = dates[0]
                starts = occurrence_start(date.fromisoformat(first["date"]), first["start_minute"], settings.tz)
                sms_context = {
                    "studio_name": settings.STUDIO_NAME,
                    "student_name": ", ".join(students),
                    "weekday": first["weekday"],
                    "lesson_date": first["date"],
                    "time": first["time"],
                    "zone": starts.tzname() or settings.STUDIO_TIMEZONE,
                    "more": len(dates) - 1,
                }
                queue_sms(session, template=TEMPLATE, recipient=payee.phone, context=sms_context, dedupe_key=f"{key}:sms")
            return True
    except sa.exc.IntegrityError:
        return False
