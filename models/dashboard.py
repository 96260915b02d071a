"""What the admin looks at: the day's lessons, provisional holds, recent payments, and the
term preview (every lesson date and what it costs). Plain dicts, nothing is changed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session, select

from models import light
from models.base import utcnow
from models.clock import format_minute, is_dst_change_week, occurrence_start, slot_label
from models.config import get_settings

if TYPE_CHECKING:
    pass

# `day_schedule` (the `studioctl dashboard today` path) selects columns through the light
# Core handles of `models.light`: importing the SQLModel table classes would cost that
# command ~150 ms of CPU. The other read models import the table classes when called.

# The statuses the light path filters on, spelled out here because importing their modules
# would import the table classes; tests/test_dashboard_queries.py checks them against
# models.enrollment's TAUGHT_STATUSES and models.attendance's TAKEN_STATUSES.
_TAUGHT = ("active", "past_due", "cancelled")  # enrollments whose lessons take place
_TAKEN = ("booked", "used")  # make-ups that own their slot-date


def day_schedule(session: Session, day: date) -> dict:
    """Every lesson and booked make-up on `day`, sorted by start time then teacher.

    A lesson is a real occurrence of an active, past-due or (not yet ended) cancelled
    enrollment: the slot's weekday, inside its dates, not a closure. Each entry carries the
    wall-clock start, the aware start in the studio's zone, and whether the week changed
    its UTC offset (DST), so the admin sees why a lesson "moved" for people abroad.
    A teacher away with a substitute: `substitute` names who teaches. Each says where: `location`
    and `room` (None for a slot without a room). Three queries whatever the size of the studio:
    closures, lessons, make-ups (the substitute and the place joined into the last two).
    """
    tz = get_settings().tz
    e, t, a = light.enrollment, light.timeslot, light.attendance
    teacher, student, instrument, semester = light.teacher, light.student, light.instrument, light.semester
    closed_semesters = set(
        session.execute(
            sa.select(light.semester_closure.c.semester_id).where(light.semester_closure.c.closed_on == day)
        ).scalars()
    )
    # Who stands in (a teacher has at most one time off on a day) and where the slot is (one room,
    # one location): outer joins in both statements, so each is still one row per lesson.
    off, stand_in, room, place = light.time_off, light.teacher.alias("stand_in"), light.room, light.location

    def where_and_who(statement):
        return (
            statement.outerjoin(off, sa.and_(off.c.teacher_id == t.c.teacher_id, off.c.starts_on <= day, off.c.ends_on >= day))
            .outerjoin(stand_in, stand_in.c.id == off.c.substitute_id)
            .outerjoin(room, room.c.id == t.c.room_id)
            .outerjoin(place, place.c.id == room.c.location_id)
        )

    rows = session.execute(
        where_and_who(
            sa.select(
                e.c.id,
                e.c.semester_id,
                e.c.end_date,
                semester.c.ends_on,
                t.c.id,
                t.c.start_minute,
                teacher.c.name,
                student.c.name,
                instrument.c.name,
                a.c.status,
                stand_in.c.name,
                place.c.name,
                room.c.name,
            )
            .select_from(e)
            .join(t, t.c.id == e.c.timeslot_id)
            .join(teacher, teacher.c.id == t.c.teacher_id)
            .join(student, student.c.id == e.c.student_id)
            .join(instrument, instrument.c.id == e.c.instrument_id)
            .outerjoin(semester, semester.c.id == e.c.semester_id)
            .outerjoin(a, sa.and_(a.c.enrollment_id == e.c.id, a.c.lesson_date == day))
        ).where(t.c.weekday == day.weekday(), e.c.status.in_(_TAUGHT), e.c.start_date <= day)
    ).all()
    times: dict[int, tuple[str, str, str, bool]] = {}  # start minute → the entry's clock fields

    def clock(minute: int) -> tuple[str, str, str, bool]:
        found = times.get(minute)
        if found is None:
            found = times[minute] = (
                format_minute(minute),
                format_minute(minute + 30),
                occurrence_start(day, minute, tz).isoformat(),
                is_dst_change_week(day, minute, tz),
            )
        return found

    lessons = []
    for (
        enrollment_id,
        semester_id,
        end_date,
        semester_end,
        slot_id,
        minute,
        teacher_name,
        student_name,
        instrument_name,
        mark,
        substitute,
        location,
        room_name,
    ) in rows:
        end = end_date or semester_end
        if end is not None and day > end:
            continue
        closed = semester_id in closed_semesters if semester_id else bool(closed_semesters)
        if closed:
            continue
        lessons.append(
            _entry(
                clock(minute),
                slot_id,
                teacher=teacher_name,
                substitute=substitute,
                student=student_name,
                instrument=instrument_name,
                kind="lesson",
                enrollment_id=enrollment_id,
                attendance=mark,
                makeup_id=None,
                location=location,
                room=room_name,
            )
        )
    m = light.makeup
    for (
        makeup_id,
        slot_id,
        minute,
        teacher_name,
        student_name,
        instrument_name,
        substitute,
        location,
        room_name,
    ) in session.execute(
        where_and_who(
            sa.select(
                m.c.id,
                t.c.id,
                t.c.start_minute,
                teacher.c.name,
                student.c.name,
                instrument.c.name,
                stand_in.c.name,
                place.c.name,
                room.c.name,
            )
            .select_from(m)
            .join(t, t.c.id == m.c.timeslot_id)
            .join(teacher, teacher.c.id == t.c.teacher_id)
            .join(student, student.c.id == m.c.student_id)
            .outerjoin(instrument, instrument.c.id == m.c.instrument_id)
        ).where(m.c.lesson_date == day, m.c.status.in_(_TAKEN))
    ).all():
        lessons.append(
            _entry(
                clock(minute),
                slot_id,
                teacher=teacher_name,
                substitute=substitute,
                student=student_name,
                instrument=instrument_name,
                kind="make_up",
                enrollment_id=None,
                attendance=None,
                makeup_id=makeup_id,
                location=location,
                room=room_name,
            )
        )
    lessons.sort(key=lambda entry: (entry["start"], entry["teacher"], entry["student"]))
    return {"date": day.isoformat(), "closed": bool(closed_semesters), "lessons": lessons}


def _entry(clock: tuple[str, str, str, bool], slot_id: int, *, location: str | None, room: str | None, **fields) -> dict:
    """One entry of the day: the clock fields, then `fields` (teacher, substitute — who teaches
    instead on time off, or None — student, instrument, kind, ids, attendance, location, room)
    and the slot."""
    start, end, starts_at, dst_change = clock
    return {
        "start": start,
        "end": end,
        "starts_at": starts_at,
        "dst_change": dst_change,
        **fields,
        "timeslot_id": slot_id,
        "location": location,
        "room": room,
    }


def provisional_holds(
    session: Session, *, now: datetime | None = None, after: tuple[datetime, int] | None = None, limit: int | None = None
) -> list[dict]:
    """Holds — provisional enrollments, those whose first payment waits for the parent's 3-D
    Secure check, and open waiting-list offers (`status` says which) — soonest expiry first (then by id), with the seconds left
    (one query). `after` (an expiry and an id) and `limit`: the admin API's pages, the holds
    that come after that place in this order."""
    from models.enrollment import HOLD_STATUSES, OFFERED, Enrollment
    from models.people import Instrument, Payee, Student, Teacher
    from models.scheduling import Timeslot

    now = now or utcnow()
    # Columns, not entities: the board is read-only, and building ORM objects (identity map,
    # instance state) for every hold was half its time at a few thousand holds (bench/dashboard.py).
    statement = (
        select(
            Enrollment.id,
            Enrollment.provisional_expires_at,
            Enrollment.pipeline_state,
            Enrollment.status,
            Timeslot.weekday,
            Timeslot.start_minute,
            Teacher.name,
            Student.name,
            Instrument.name,
            Payee.email,
        )
        .join(Timeslot, Timeslot.id == Enrollment.timeslot_id)
        .join(Teacher, Teacher.id == Timeslot.teacher_id)
        .join(Student, Student.id == Enrollment.student_id)
        .join(Payee, Payee.id == Student.payee_id)
        .join(Instrument, Instrument.id == Enrollment.instrument_id)
        .where(Enrollment.status.in_((*HOLD_STATUSES, OFFERED)))
        .order_by(Enrollment.provisional_expires_at, Enrollment.id)
        .limit(limit)
    )
    if after is not None:
        expires, enrollment_id = after
        statement = statement.where(
            sa.or_(
                Enrollment.provisional_expires_at > expires,
                sa.and_(Enrollment.provisional_expires_at == expires, Enrollment.id > enrollment_id),
            )
        )
    rows = []
    for (
        enrollment_id,
        expires_at,
        pipeline_state,
        status,
        weekday,
        start_minute,
        teacher,
        student,
        instrument,
        payee_email,
    ) in session.exec(statement).all():
        left = int((expires_at - now).total_seconds())
        rows.append(
            {
                "id": enrollment_id,
                "teacher": teacher,
                "student": student,
                "instrument": instrument,
                "payee": payee_email,
                "slot": slot_label(weekday, start_minute),
                "expires_at": expires_at.isoformat(),
                "seconds_left": max(left, 0),
                "overdue": left < 0,
                "pipeline_state": pipeline_state,
                "status": status,
            }
        )
    return rows


def payment_activity(
    session: Session,
    *,
    days: int = 7,
    now: datetime | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int | None = None,
) -> dict:
    """Stripe events received in the last `days` days (newest first, then by id) and the failures
    to act on: events that failed processing, and enrollments now failed or past due.
    `before` (a received time and an id) and `limit` page the events (the admin API); the
    failures are always all of them."""
    from models.billing import StripeEvent
    from models.enrollment import FAILED, PAST_DUE, Enrollment
    from models.people import Student

    now = now or utcnow()
    since = now - timedelta(days=days)
    # Columns, not entities (read-only; see provisional_holds).
    recent = (
        select(
            StripeEvent.id,
            StripeEvent.stripe_event_id,
            StripeEvent.type,
            StripeEvent.status,
            StripeEvent.received_at,
            StripeEvent.error,
        )
        .where(StripeEvent.received_at >= since)
        .order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc())
    )
    statement = recent.limit(limit)
    if before is not None:
        received, event_id = before
        statement = statement.where(
            sa.or_(StripeEvent.received_at < received, sa.and_(StripeEvent.received_at == received, StripeEvent.id < event_id))
        )
    events = [_event_row(event) for event in session.exec(statement).all()]
    if before is None and limit is None:  # every event of the window is here: no second query
        failed = [event for event in events if event["status"] == "failed"]
    else:
        failed = [_event_row(event) for event in session.exec(recent.where(StripeEvent.status == "failed")).all()]
    failures = [{"kind": "stripe_event", "id": event["id"], "what": event["type"], "error": event["error"]} for event in failed]
    for enrollment_id, status, failure_reason, student_name in session.exec(
        select(Enrollment.id, Enrollment.status, Enrollment.failure_reason, Student.name)
        .join(Student, Student.id == Enrollment.student_id)
        .where(Enrollment.status.in_((FAILED, PAST_DUE)), Enrollment.updated_at >= since)
        .order_by(Enrollment.updated_at.desc())
    ).all():
        failures.append(
            {
                "kind": f"enrollment_{status}",
                "id": enrollment_id,
                "what": student_name,
                "error": failure_reason or ("payment failed" if status == PAST_DUE else None),
            }
        )
    return {"days": days, "events": events, "failures": failures}


def _event_row(row: sa.Row) -> dict:
    event_id, stripe_event_id, type_, status, received_at, error = row
    return {
        "id": event_id,
        "stripe_event_id": stripe_event_id,
        "type": type_,
        "status": status,
        "received_at": received_at.isoformat(),
        "error": error,
    }
