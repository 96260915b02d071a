"""`/parent/bookings`: a signed-in family's bookings (hold, list, read, cancel, move) and the
absences it reports for their lessons.

The routes are on the `parent` blueprint of `webapi.parent` (endpoints `parent.create_booking`...:
the rate limits name them); `webapi/__init__.py` imports this module so they exist before the
blueprint is registered. Ids from the client are looked up within the caller's family (another
family's booking is a 404).
"""

from __future__ import annotations

from flask import Response, current_app, g, url_for

from models import family
from models.absences import report_absence
from models.booking import hold_slot
from models.changes import move_enrollment
from models.db import after_commit, session_scope
from models.enrollment import ACTION_REQUIRED, PAST_DUE, Enrollment, get_enrollment
from models.errors import Forbidden
from models.idempotency import IdempotencyRace, fingerprint, store_response, stored_response
from webapi.booking_schemas import (
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
    PaymentAction,
)
from webapi.parent import _actor, _payee, bp
from webapi.schemas import PageQuery, Problem, decode_cursor, page

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
