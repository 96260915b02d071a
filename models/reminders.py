"""Lesson reminders (issue 14): a `lesson_reminder` by email and/or SMS ahead of every lesson
that is going to happen, exactly once per lesson and channel.

The lessons are those of the family read model (`models.lessons.family_lessons`: the weekly
lessons of live, unpaused enrollments within their dates and the booked make-ups, closures
left out), less the holds not paid yet and the lessons already called off (excused,
late_cancel, teacher_cancelled). A lesson is due once it starts within REMINDER_HOURS_BEFORE
hours; the hourly job queues one message per channel the family chose, each under the dedupe
key `reminder:<lesson|makeup>-<id>:<date>:<email|sms>` (unique in email_log / sms_log), so a
job run again, late or twice sends nothing more. Times are worded in the studio's zone with
the abbreviation of that date (EST or EDT: right across DST).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session, col

from models.attendance import EXCUSED, LATE_CANCEL, TAKEN_STATUSES, TEACHER_CANCELLED, MakeUp
from models.audit import record_audit
from models.clock import format_minute, weekday_label
from models.config import get_settings
from models.enrollment import LIVE_STATUSES, PAUSED, Enrollment
from models.errors import Invalid
from models.lessons import MAKEUP, Lesson, family_lessons
from models.outbox import queue_email
from models.people import Payee, Student
from models.sms import normalize_phone, queue_sms

CALLED_OFF = (EXCUSED, LATE_CANCEL, TEACHER_CANCELLED)
_LIVE = tuple(status for status in LIVE_STATUSES if status != PAUSED)


@dataclass(frozen=True)
class Queued:
    """What one run queued: (lesson key, channel) pairs."""

    email: list[str]
    sms: list[str]


def lesson_key(lesson: Lesson) -> str:
    """`lesson-<enrollment id>:<date>` or `makeup-<makeup id>:<date>`: one lesson, whatever its time."""
    if lesson.kind == MAKEUP:
        return f"makeup-{lesson.makeup_id}:{lesson.date.isoformat()}"
    return f"lesson-{lesson.enrollment_id}:{lesson.date.isoformat()}"


def dedupe_key(lesson: Lesson, channel: str) -> str:
    """The reminder's dedupe key for `channel` (`email` or `sms`)."""
    return f"reminder:{lesson_key(lesson)}:{channel}"


def reminder_context(payee: Payee, lesson: Lesson) -> dict:
    """What the `lesson_reminder` templates read: the lesson in the studio's wording."""
    settings = get_settings()
    return {
        "payee_name": payee.name,
        "student_name": lesson.student,
        "teacher_name": lesson.substitute or lesson.teacher,  # who teaches it (a substitute on time off)
        "instrument": lesson.instrument or "",
        "kind": lesson.kind,
        "weekday": weekday_label(lesson.date.weekday()),
        "lesson_date": lesson.date.isoformat(),
        "time": format_minute(lesson.starts_at.hour * 60 + lesson.starts_at.minute),
        "zone": lesson.starts_at.tzname() or settings.STUDIO_TIMEZONE,
        "timezone": settings.STUDIO_TIMEZONE,
        "starts_at": lesson.starts_at.isoformat(),
        "studio_name": settings.STUDIO_NAME,
    }


def _families_with_lessons(session: Session, first, last) -> list[int]:
    """Families that may have a lesson from `first` to `last` and want a reminder on some channel."""
    weekly = (
        sa.select(col(Student.payee_id))
        .join(Enrollment, col(Enrollment.student_id) == Student.id)
        .where(col(Enrollment.status).in_(_LIVE), col(Enrollment.start_date) <= last)
        .where(col(Enrollment.end_date).is_(None) | (col(Enrollment.end_date) >= first))
    )
    makeups = (
        sa.select(col(Student.payee_id))
        .join(MakeUp, col(MakeUp.student_id) == Student.id)
        .where(col(MakeUp.status).in_(TAKEN_STATUSES), col(MakeUp.lesson_date) >= first, col(MakeUp.lesson_date) <= last)
    )
    ids = {row[0] for row in session.execute(weekly).all()} | {row[0] for row in session.execute(makeups).all()}
    if not ids:
        return []
    wanted = sa.select(col(Payee.id)).where(
        col(Payee.id).in_(sorted(ids)), col(Payee.remind_by_email) | (col(Payee.remind_by_sms) & col(Payee.phone).is_not(None))
    )
    return sorted(row[0] for row in session.execute(wanted).all())


def due_lessons(session: Session, payee_id: int, *, now: datetime, hours: int) -> list[Lesson]:
    """The family's lessons starting after `now` and within `hours` of it that will happen."""
    tz = get_settings().tz
    # In UTC: aware datetimes sharing one zone compare and add by the wall clock (wrong across DST).
    now = now.astimezone(UTC)
    until = now + timedelta(hours=hours)
    lessons = family_lessons(session, payee_id, first=now.astimezone(tz).date(), last=until.astimezone(tz).date(), tz=tz)
    return [
        lesson
        for lesson in lessons
        if now < lesson.starts_at.astimezone(UTC) <= until and not lesson.tentative and lesson.attendance not in CALLED_OFF
    ]


def queue_lesson_reminders(session: Session, *, now: datetime, hours: int | None = None) -> Queued:
    """Queue the reminders due at `now` (REMINDER_HOURS_BEFORE ahead) that were never queued."""
    hours = hours if hours is not None else get_settings().REMINDER_HOURS_BEFORE
    tz = get_settings().tz
    now = now.astimezone(UTC)
    first, last = now.astimezone(tz).date(), (now + timedelta(hours=hours)).astimezone(tz).date()
    emails: list[str] = []
    texts: list[str] = []
    for payee_id in _families_with_lessons(session, first, last):
        payee = session.get(Payee, payee_id)
        assert payee is not None
        for lesson in due_lessons(session, payee_id, now=now, hours=hours):
            context = reminder_context(payee, lesson)
            if payee.remind_by_email and _once(
                session,
                partial(
                    queue_email,
                    session,
                    template="lesson_reminder",
                    recipient=payee.email,
                    context=context,
                    dedupe_key=dedupe_key(lesson, "email"),
                ),
            ):
                emails.append(lesson_key(lesson))
            if (
                payee.remind_by_sms
                and payee.phone
                and _once(
                    session,
                    partial(
                        queue_sms,
                        session,
                        template="lesson_reminder",
                        recipient=payee.phone,
                        context=context,
                        dedupe_key=dedupe_key(lesson, "sms"),
                    ),
                )
            ):
                texts.append(lesson_key(lesson))
    return Queued(email=emails, sms=texts)


def _once(session: Session, queue: Callable[[], object]) -> bool:
    """Queue in a savepoint: a run elsewhere that queued the same key a moment ago (the unique
    dedupe key refuses the second row) is no failure, just nothing more to send."""
    try:
        with session.begin_nested():
            return queue() is not None
    except sa.exc.IntegrityError:
        return False


def reminder_settings(payee: Payee) -> dict:
    """The family's reminder channels and phone, as the API and the CLI answer them."""
    return {"email": payee.remind_by_email, "sms": payee.remind_by_sms, "phone": payee.phone}


def set_reminders(
    session: Session, payee: Payee, *, email: bool | None = None, sms: bool | None = None, phone: str | None = None, actor: str
) -> Payee:
    """Change the family's reminder channels (and phone, stored in E.164); audited. SMS needs a
    valid phone number (Invalid, field `phone`); an empty `phone` removes it (and SMS with it)."""
    before = reminder_settings(payee)
    if phone is not None:
        payee.phone = normalize_phone(phone) if phone.strip() else None
        if payee.phone is None and sms is None:
            sms = False
    if email is not None:
        payee.remind_by_email = email
    if sms is not None:
        payee.remind_by_sms = sms
    if payee.remind_by_sms and not payee.phone:
        raise Invalid("SMS reminders need a phone number", field="phone")
    if payee.remind_by_sms and payee.phone and not payee.phone.startswith("+"):
        payee.phone = normalize_phone(payee.phone)  # a number written before E.164 was the rule
    after = reminder_settings(payee)
    if after != before:
        session.add(payee)
        session.flush()
        record_audit(session, actor=actor, action="payee.reminders", entity=payee, before=before, after=after)
    return payee
