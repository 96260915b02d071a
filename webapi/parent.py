"""`/parent/*`: a signed-in family's own data, bookings, make-ups and calendar.

Every route needs our bearer token (401 otherwise); the calendar also accepts the
family's secret `?token=` so calendar apps can subscribe. Each route opens one unit of
work and calls one domain operation; ids from the client are always looked up within the
caller's family, so another family's object is a 404 (never a 403 that would confirm it
exists). Writes are audited as `payee:<id>` by the operations themselves.
"""

from __future__ import annotations

from flask import Response, current_app, g, request, url_for
from flask_openapi3 import APIBlueprint, Tag

from models import family
from models.absences import report_absence
from models.access import register_sign_in, rotate_calendar_token
from models.attendance import book_makeup, eligible_makeup_slots, get_makeup
from models.base import utcnow
from models.booking import hold_slot
from models.calendar import family_calendar
from models.changes import move_enrollment
from models.clock import occurrence_start, studio_today
from models.db import after_commit, session_scope
from models.enrollment import ACTION_REQUIRED, PAST_DUE, Enrollment, archive_student, get_enrollment
from models.errors import Forbidden, NotFound
from models.idempotency import IdempotencyRace, fingerprint, store_response, stored_response
from models.lessons import family_lessons, lesson_range
from models.people import Payee, Student, add_student, get_student, update_student
from models.reminders import set_reminders
from webapi.ics import render_calendar
from webapi.lesson_schemas import LessonList, LessonsQuery
from webapi.schemas import (
    AbsenceCreate,
    AbsenceOut,
    BookingAccepted,
    BookingCancelled,
    BookingCreate,
    BookingHeaders,
    BookingMove,
    BookingOut,
    BookingPage,
    BookingPath,
    CalendarQuery,
    CalendarTokenOut,
    MakeupBook,
    MakeupOut,
    MakeupPage,
    MakeupPath,
    MakeupSlotList,
    MakeupSlotOut,
    PageQuery,
    PayeeOut,
    PayeePatch,
    PayeeUpdate,
    PaymentAction,
    PaymentSetupOut,
    Problem,
    Reminders,
    RemindersOut,
    StudentCreate,
    StudentOut,
    StudentPage,
    StudentPath,
    StudentUpdate,
    decode_cursor,
    page,
)
from webapi.security import require_identity

tag = Tag(name="parent", description="The signed-in family (bearer token from /auth/exchange)")
bp = APIBlueprint(
    "parent",
    __name__,
    url_prefix="/parent",
    abp_tags=[tag],
    abp_security=[{"bearer": []}],
    abp_responses={401: Problem, 403: Problem, 404: Problem, 422: Problem, 503: Problem},
)


@bp.before_request
def _authenticate():
    if request.method == "OPTIONS":  # CORS preflight carries no credentials
        return
    if request.endpoint == "parent.calendar" and request.args.get("token"):
        return  # the subscription token is checked by the view
    require_identity()


def _settings():
    return current_app.config["STUDIO_SETTINGS"]


def _payee(session, *, lock: bool = False) -> Payee:
    payee = family.payee_for_user(session, g.identity.sub, lock=lock)
    if payee is None:
        raise Forbidden("register first with PUT /parent/payee", type="payee-required")
    return payee


def _actor(payee: Payee | family.PayeeRef) -> str:
    return f"payee:{payee.id}"


# Payee -----------------------------------------------------------------------------------


def _calendar_url(token: str) -> str:
    # From PUBLIC_BASE_URL, never from the request: its Host header (or a script root) is the
    # client's to choose, and this URL carries the family's secret.
    path = current_app.url_map.bind("").build("parent.calendar", {"token": token})
    return _settings().public_base_url + path


def _payee_out(payee: Payee) -> dict:
    calendar_url = _calendar_url(payee.calendar_token)
    return PayeeOut(
        id=payee.id,
        email=payee.email,
        name=payee.name,
        phone=payee.phone,
        has_billing_customer=payee.stripe_customer_id is not None,
        reminders=RemindersOut(email=payee.remind_by_email, sms=payee.remind_by_sms),
        calendar_url=calendar_url,
    ).model_dump(mode="json")


@bp.get("/payee", responses={200: PayeeOut})
def get_payee():
    """The caller's payee record (403 `payee-required` until `PUT /parent/payee`)."""
    with session_scope(write=False) as session:
        return _payee_out(_payee(session))


@bp.put("/payee", responses={200: PayeeOut, 409: Problem})
def put_payee(body: PayeeUpdate):
    """Create or update the caller's payee (idempotent); the email always comes from the token.

    A family record the studio made with the same email is claimed only when the sign-in's
    email is verified, else 409 `link-required`; `invite_code` (from the studio, once, 7 days)
    claims it whatever the email (403 `invite-invalid`, `invite-used`, `invite-expired`).
    """
    identity = g.identity
    with session_scope() as session:
        payee = register_sign_in(
            session,
            supabase_user_id=identity.sub,
            email=identity.email,
            email_verified=identity.email_verified,
            name=body.name,
            phone=body.phone,
            invite_code=body.invite_code,
        )
        _set_reminders(session, payee, body.reminders, phone=body.phone)
        return _payee_out(payee)


@bp.patch("/payee", responses={200: PayeeOut, 403: Problem, 422: Problem})
def patch_payee(body: PayeePatch):
    """Change some of the caller's payee record: name, phone, lesson reminder channels
    (`{"reminders": {"email": true, "sms": false}}`); fields left out are unchanged. SMS needs a
    valid phone number (422 `invalid`, field `phone`); numbers are stored in E.164."""
    identity = g.identity
    with session_scope() as session:
        _payee(session)  # 403 payee-required before PUT /parent/payee
        payee = register_sign_in(
            session,
            supabase_user_id=identity.sub,
            email=identity.email,
            email_verified=identity.email_verified,
            name=body.name,
            phone=body.phone,
        )
        _set_reminders(session, payee, body.reminders, phone=body.phone)
        return _payee_out(payee)


def _set_reminders(session, payee: Payee, reminders: Reminders | None, *, phone: str | None) -> None:
    """The request's reminder channels (and its phone, in E.164 while SMS is on); audited."""
    if reminders is None and not (phone and payee.remind_by_sms):
        return
    set_reminders(
        session,
        payee,
        email=reminders.email if reminders else None,
        sms=reminders.sms if reminders else None,
        phone=phone,
        actor=_actor(payee),
    )


# Students --------------------------------------------------------------------------------


def _student_out(student: Student) -> dict:
    return StudentOut(id=student.id, name=student.name, birth_date=student.birth_date, notes=student.notes).model_dump(
        mode="json"
    )


@bp.get("/students", responses={200: StudentPage})
def list_students(query: PageQuery):
    """The family's students."""
    with session_scope(write=False) as session:
        rows = family.students_page(session, _payee(session).id, after_id=decode_cursor(query.cursor), limit=query.limit)
    items, next_cursor = page(rows, query.limit)
    return {"items": [_student_out(row) for row in items], "next_cursor": next_cursor}


@bp.post("/students", responses={201: StudentOut, 409: Problem})
def create_student(body: StudentCreate):
    """Add a child to the family: 409 `too-many-students` past `MAX_STUDENTS_PER_PAYEE` (archived ones do not count)."""
    with session_scope() as session:
        payee = _payee(session)
        student = add_student(
            session,
            payee=payee,
            name=body.name,
            birth_date=body.birth_date,
            notes=body.notes,
            actor=_actor(payee),
            max_students=_settings().MAX_STUDENTS_PER_PAYEE,
        )
        out = _student_out(student)
    return out, 201, {"Location": url_for("parent.get_student_route", student_id=out["id"])}


@bp.get("/students/<int:student_id>", responses={200: StudentOut})
def get_student_route(path: StudentPath):
    """One of the family's students."""
    with session_scope(write=False) as session:
        return _student_out(get_student(session, path.student_id, payee_id=_payee(session).id))


@bp.patch("/students/<int:student_id>", responses={200: StudentOut})
def patch_student(path: StudentPath, body: StudentUpdate):
    """Change a student's name, birth date or notes (`null` clears the optional ones)."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    with session_scope() as session:
        payee = _payee(session)
        student = get_student(session, path.student_id, payee_id=payee.id)
        student = update_student(session, student, actor=_actor(payee), **changes)
        return _student_out(student)


@bp.delete("/students/<int:student_id>", responses={204: None, 409: Problem})
def delete_student(path: StudentPath):
    """Remove a student from the family list (409 while they hold a live booking)."""
    with session_scope() as session:
        payee = _payee(session)
        archive_student(session, get_student(session, path.student_id, payee_id=payee.id), actor=_actor(payee))
    return "", 204


# Payment setup ---------------------------------------------------------------------------


@bp.post("/payment-setup", responses={200: PaymentSetupOut, 502: Problem})
def payment_setup():
    """A Stripe SetupIntent client secret for the family's customer (card entry in the app)."""
    from workers.payments import create_payment_setup  # imports stripe: only when a parent sets up a card

    with session_scope(write=False) as session:
        payee_id = _payee(session).id
    result = create_payment_setup(payee_id)
    return PaymentSetupOut(client_secret=result["client_secret"]).model_dump()


# Bookings --------------------------------------------------------------------------------


def _status_url(enrollment_id: int) -> str:
    return url_for("parent.get_booking", booking_id=enrollment_id)


def _payment_action(enrollment: Enrollment) -> PaymentAction | None:
    if not enrollment.action_client_secret or enrollment.status not in (ACTION_REQUIRED, PAST_DUE):
        return None
    return PaymentAction(type="authenticate_payment", client_secret=enrollment.action_client_secret, url=enrollment.action_url)


def _booking_out(enrollment: Enrollment, instrument: str, *, moved_to: int | None = None) -> dict:
    return BookingOut(
        id=enrollment.id,
        status=enrollment.status,
        student_id=enrollment.student_id,
        timeslot_id=enrollment.timeslot_id,
        instrument=instrument,
        plan_id=enrollment.plan_id,
        start_date=enrollment.start_date,
        end_date=enrollment.end_date,
        cancel_at_period_end=enrollment.cancel_at_period_end,
        moved_from=enrollment.moved_from_id,
        moved_to=moved_to,
        expires_at=enrollment.provisional_expires_at,
        failure_reason=enrollment.failure_reason,
        action=_payment_action(enrollment),
        status_url=_status_url(enrollment.id),
        created_at=enrollment.created_at,
    ).model_dump(mode="json")


def _replay(record) -> Response:
    response = current_app.json.response(record.response_body)
    response.status_code = record.response_status
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = record.response_body.get("status_url", "")
    return response


@bp.post("/bookings", responses={202: BookingAccepted, 409: Problem, 429: Problem})
def create_booking(body: BookingCreate, header: BookingHeaders):
    """Hold a slot for one of the family's students: 202 with a provisional booking to poll.

    One transaction checks ownership, the slot and the hold cap, locks the slot and inserts
    the hold; a taken slot is 409 `slot-taken`, too many holds 409 `too-many-holds`. The
    booking task is enqueued only after commit. With `Idempotency-Key`, a retry returns the
    first answer and creates nothing; the same key with another body is 422.
    """
    from workers.tasks import book_enrollment

    key = header.idempotency_key
    request_fingerprint = fingerprint(body.model_dump(mode="json"))
    try:
        with session_scope() as session:
            # With a key, the family's row is locked first: it serialises the family's retries,
            # so a retry waits for the first attempt and replays its answer. Without one,
            # `hold_slot` locks it only once the slot is known to be free.
            payee = family.payee_ref_for_user(session, g.identity.sub, lock=bool(key))
            if payee is None:
                raise Forbidden("register first with PUT /parent/payee", type="payee-required")
            if key:
                record = stored_response(session, payee_id=payee.id, key=key, request_fingerprint=request_fingerprint)
                if record is not None:
                    return _replay(record)
            enrollment = hold_slot(
                session,
                payee=payee,
                student_id=body.student_id,
                timeslot_id=body.timeslot_id,
                instrument=body.instrument,
                plan=body.plan,
                start_date=body.start_date,
                actor=_actor(payee),
            )
            answer = BookingAccepted(
                id=enrollment.id,
                status=enrollment.status,
                expires_at=enrollment.provisional_expires_at,
                status_url=_status_url(enrollment.id),
            ).model_dump(mode="json")
            if key:
                store_response(
                    session, payee_id=payee.id, key=key, request_fingerprint=request_fingerprint, status=202, body=answer
                )
            enrollment_id = enrollment.id
            after_commit(session, lambda: book_enrollment(enrollment_id))
    except IdempotencyRace:
        with session_scope(write=False) as session:
            record = stored_response(session, payee_id=_payee(session).id, key=key, request_fingerprint=request_fingerprint)
            return _replay(record)
    return answer, 202, {"Location": answer["status_url"]}


@bp.get("/bookings", responses={200: BookingPage})
def list_bookings(query: PageQuery):
    """The family's bookings, newest first."""
    with session_scope(write=False) as session:
        payee_id = _payee(session).id
        rows = family.bookings_page(session, payee_id, before_id=decode_cursor(query.cursor), limit=query.limit)
        items, next_cursor = page(rows, query.limit, key=lambda row: row[0].id)
        moved = family.moved_to(session, payee_id, [enrollment.id for enrollment, _ in items])
    return {
        "items": [_booking_out(enrollment, name, moved_to=moved.get(enrollment.id)) for enrollment, name in items],
        "next_cursor": next_cursor,
    }


@bp.post("/bookings/<int:booking_id>/cancel", responses={200: BookingCancelled, 409: Problem, 502: Problem})
def cancel_booking_route(path: BookingPath):
    """Cancel a booking. A hold (`provisional`, `action_required`) is `cancelled` at once. A weekly
    or monthly booking stays `active` until its last lesson in the period paid for (`end_date`,
    `cancel_at_period_end: true`) once Stripe has been told not to renew it, then is `cancelled`;
    the slot is free from the day after `end_date`. Asked again (or for a booking already over):
    the same answer. A semester plan, a booking paid outside the app or one whose payment is
    being settled (`past_due`, `paused`): 409 `contact-studio`. Stripe unreachable: 502, nothing
    changed (ask again).
    """
    from workers.enrollment_changes import cancel_booking  # imports stripe: only when a parent cancels

    with session_scope(write=False) as session:
        payee_id = _payee(session).id
        instrument = family.instrument_name(session, get_enrollment(session, path.booking_id, payee_id=payee_id).instrument_id)
    enrollment = cancel_booking(path.booking_id, actor=f"payee:{payee_id}", payee_id=payee_id)
    out = _booking_out(enrollment, instrument) | {"cancel_at_period_end": enrollment.cancel_at_period_end}
    return BookingCancelled.model_validate(out).model_dump(mode="json")


@bp.post("/bookings/<int:booking_id>/move", responses={200: BookingOut, 409: Problem})
def move_booking_route(path: BookingPath, body: BookingMove):
    """Move an active booking to another weekly slot (same instrument, same plan, nothing charged):
    the new booking (200) starts on the slot's first free lesson on or after `start_date` (default:
    the next one), the old one ends with its last lesson before that. One transaction, the slot
    locked as a booking locks it: a slot taken is 409 `slot-taken` with nothing changed; a
    booking that is not `active`, is cancelled at its period end or moved already is 409; a
    teacher who does not teach the instrument, a start in the past or not on the slot's weekday
    is 422.
    """
    from workers.tasks import move_subscription

    with session_scope() as session:
        payee = _payee(session)
        enrollment = get_enrollment(session, path.booking_id, payee_id=payee.id)
        moved = move_enrollment(
            session, enrollment, timeslot_id=body.timeslot_id, start_date=body.start_date, actor=_actor(payee)
        )
        if moved.stripe_subscription_id:  # the subscription's metadata names the new booking, after commit
            moved_id = moved.id
            after_commit(session, lambda: move_subscription(moved_id))
        return _booking_out(moved, family.instrument_name(session, moved.instrument_id))


@bp.get("/bookings/<int:booking_id>", responses={200: BookingOut})
def get_booking(path: BookingPath):
    """One booking: its status (`provisional`, `active`, `failed` with `failure_reason`...), its
    dates (`end_date`: its last lesson, once it ends), whether it ends with the period paid for
    (`cancel_at_period_end`), and the booking it continues (`moved_from`) or that continues it
    (`moved_to`) after a move to another slot. Another family's booking is 404."""
    with session_scope(write=False) as session:
        payee_id = _payee(session).id
        enrollment = get_enrollment(session, path.booking_id, payee_id=payee_id)
        moved_to = family.moved_to(session, payee_id, [enrollment.id]).get(enrollment.id)
        return _booking_out(enrollment, family.instrument_name(session, enrollment.instrument_id), moved_to=moved_to)


@bp.post("/bookings/<int:booking_id>/absences", responses={200: AbsenceOut, 201: AbsenceOut, 409: Problem})
def report_absence_route(path: BookingPath, body: AbsenceCreate):
    """Call off one lesson of the booking that has not started, under the make-up policy.

    At least `MAKEUP_NOTICE_HOURS` before it starts: `excused`, with a make-up credit and its
    invite email while the student is under `MAKEUP_CREDITS_PER_SEMESTER` (past it, no credit
    and `credit_reason` says why); later: `late_cancel`, no credit. 201; the lesson's absence
    already recorded (a repeat) answers it again with 200. Another mark there (the studio's
    `present`, `teacher_cancelled`...) is 409 `already-marked`; a hold or ended booking 409; a
    date that is no lesson of the booking (weekday, closure, outside its dates) or a lesson
    already started is 422.
    """
    with session_scope() as session:
        payee = _payee(session)
        absence = report_absence(
            session,
            payee_id=payee.id,
            enrollment_id=path.booking_id,
            lesson_date=body.date,
            reason=body.reason,
            actor=_actor(payee),
        )
        out = AbsenceOut(
            attendance_id=absence.attendance.id,
            status=absence.attendance.status,
            makeup_id=absence.credit.id if absence.credit else None,
            credit_reason=absence.credit_reason,
        ).model_dump(mode="json")
    return out, 201 if absence.created else 200


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
