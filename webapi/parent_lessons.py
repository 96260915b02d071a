"""`/parent/makeups`, `/parent/lessons`, `/parent/calendar.ics`: a signed-in family's make-up
credits (and booking one onto a free slot-date), its lessons, and its calendar feed and subscription token.

The routes are on the `parent` blueprint of `webapi.parent`; `webapi/__init__.py` imports this
module so they exist before the blueprint is registered. The calendar also accepts the family's
secret `?token=` (see `webapi.parent._authenticate`).
"""

from __future__ import annotations

from flask import Response

from models import family
from models.access import rotate_calendar_token
from models.attendance import book_makeup, eligible_makeup_slots, get_makeup
from models.base import utcnow
from models.calendar import family_calendar
from models.clock import occurrence_start, studio_today
from models.db import session_scope
from models.errors import NotFound
from models.lessons import family_lessons, lesson_range
from webapi.booking_schemas import MakeupBook, MakeupOut, MakeupPage, MakeupPath, MakeupSlotList, MakeupSlotOut
from webapi.ics import render_calendar
from webapi.lesson_schemas import LessonList, LessonsQuery
from webapi.parent import _actor, _calendar_url, _payee, _settings, bp
from webapi.schemas import CalendarQuery, CalendarTokenOut, PageQuery, Problem, decode_cursor, page

# Make-ups --------------------------------------------------------------------------------


def _makeup_out(credit, instrument: str | None) -> dict:
    return MakeupOut(
        id=credit.id,
        student_id=credit.student_id,
        status=credit.status,
        instrument=instrument,
        reason=credit.reason,
        expires_on=credit.expires_on,
        timeslot_id=credit.timeslot_id,
        lesson_date=credit.lesson_date,
    ).model_dump(mode="json")


@bp.get("/makeups", responses={200: MakeupPage})
def list_makeups(query: PageQuery):
    """The family's make-up credits, newest first."""
    with session_scope(write=False) as session:
        rows = family.makeups_page(session, _payee(session).id, before_id=decode_cursor(query.cursor), limit=query.limit)
    items, next_cursor = page(rows, query.limit, key=lambda row: row[0].id)
    return {"items": [_makeup_out(credit, name) for credit, name in items], "next_cursor": next_cursor}


@bp.get("/makeups/<int:makeup_id>/slots", responses={200: MakeupSlotList})
def makeup_slots(path: MakeupPath):
    """Free slot-dates where this credit can be used (empty when it is not available)."""
    tz = _settings().tz
    with session_scope(write=False) as session:
        credit = get_makeup(session, path.makeup_id, payee_id=_payee(session).id)
        options = eligible_makeup_slots(session, credit)
        names = family.teacher_names(session, {slot.teacher_id for slot, _ in options})
    items = [
        MakeupSlotOut(
            timeslot_id=slot.id,
            teacher_id=slot.teacher_id,
            teacher_name=names.get(slot.teacher_id, ""),
            date=day,
            start=occurrence_start(day, slot.start_minute, tz),
        )
        for slot, day in options
    ]
    return MakeupSlotList(items=items).model_dump(mode="json")


@bp.post("/makeups/<int:makeup_id>/book", responses={200: MakeupOut, 409: Problem})
def book_makeup_route(path: MakeupPath, body: MakeupBook):
    """Book the credit onto a free slot-date (409 `slot-taken` when someone just took it)."""
    with session_scope() as session:
        payee = _payee(session)
        credit = get_makeup(session, path.makeup_id, payee_id=payee.id)
        credit = book_makeup(session, credit, timeslot_id=body.timeslot_id, lesson_date=body.date, actor=_actor(payee))
        return _makeup_out(credit, family.instrument_name(session, credit.instrument_id))


# Lessons ---------------------------------------------------------------------------------


@bp.get("/lessons", responses={200: LessonList})
def list_lessons(query: LessonsQuery):
    """Every lesson of the family from `from` (default today) to `to` (default 8 weeks on, at
    most 26; 422 beyond): the weekly lessons of its bookings within their dates (a hold's are
    `tentative`; a paused booking has none) and its booked make-ups, by start, each with its
    attendance once marked. Closure dates are not lessons."""
    first, last = lesson_range(studio_today(), query.from_, query.to)
    with session_scope(write=False) as session:
        lessons = family_lessons(session, _payee(session).id, first=first, last=last, tz=_settings().tz)
    items = [
        {
            "date": lesson.date,
            "starts_at": lesson.starts_at,
            "kind": lesson.kind,
            "student_id": lesson.student_id,
            "student": lesson.student,
            "teacher": lesson.teacher,
            "substitute": lesson.substitute,
            "instrument": lesson.instrument,
            "timeslot_id": lesson.timeslot_id,
            "enrollment_id": lesson.enrollment_id,
            "makeup_id": lesson.makeup_id,
            "attendance": {"id": lesson.attendance_id, "status": lesson.attendance} if lesson.attendance else None,
            "tentative": lesson.tentative,
            "location": lesson.location,
            "room": lesson.room,
        }
        for lesson in lessons
    ]
    return LessonList.model_validate({"from": first, "to": last, "items": items}).model_dump(mode="json", by_alias=True)


# Calendar --------------------------------------------------------------------------------


@bp.get("/calendar.ics", responses={200: None}, security=[{"bearer": []}, {"calendarToken": []}])
def calendar(query: CalendarQuery):
    """The family's lessons and booked make-ups as iCalendar (closures left out).

    Calendar apps subscribe with `?token=` (the `calendar_url` of `GET /parent/payee`).
    """
    settings = _settings()
    today = utcnow().astimezone(settings.tz).date()
    with session_scope(write=False) as session:
        if query.token:
            payee = family.payee_for_calendar_token(session, query.token)
            if payee is None:  # never issued, or rotated away: no calendar lives at this URL
                raise NotFound("no calendar at this address (the family may have rotated its calendar link)")
        else:
            payee = _payee(session)
        entries = family_calendar(session, payee.id, tz=settings.tz, today=today)
    body = render_calendar(entries, settings, today=today)
    return Response(body, mimetype="text/calendar", headers={"Content-Disposition": 'inline; filename="lessons.ics"'})


@bp.post("/calendar-token", responses={200: CalendarTokenOut})
def rotate_calendar_token_route():
    """A new calendar subscription token; the old `calendar_url` answers 404 from now on.

    For a link that was shared or leaked: calendar apps subscribed to the old URL must
    subscribe again to the new one.
    """
    with session_scope() as session:
        payee = _payee(session)
        payee = rotate_calendar_token(session, payee, actor=_actor(payee))
        return CalendarTokenOut(calendar_url=_calendar_url(payee.calendar_token)).model_dump()
