"""The family's waiting list and the offers of freed slots (issue 14): `/parent/waitlist`, `/parent/offers`."""

from __future__ import annotations

from flask import request
from flask_openapi3 import APIBlueprint, Tag

from models import offers, waitlist
from models.db import after_commit, session_scope
from webapi.parent import _actor, _payee
from webapi.parent_bookings import _status_url
from webapi.schemas import Problem
from webapi.security import require_identity
from webapi.waitlist_schemas import (
    EntryCreate,
    EntryList,
    EntryOut,
    EntryPath,
    OfferAccept,
    OfferAccepted,
    OfferList,
    OfferOut,
    OfferPath,
)

tag = Tag(name="waitlist", description="The family's waiting list and the offers of freed slots")
bp = APIBlueprint(
    "waitlist",
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
    require_identity()


@bp.post("/waitlist", responses={201: EntryOut, 409: Problem})
def add_entry_route(body: EntryCreate):
    """Put a student on the waiting list for an instrument, optionally a teacher, weekdays and a
    time window. A freed slot that fits is offered to the earliest open entry. At most 3 open
    entries per student (409 `too-many-entries`); another family's student is 404."""
    with session_scope() as session:
        payee = _payee(session)
        entry = waitlist.add_entry(
            session,
            student_id=body.student_id,
            instrument=body.instrument,
            teacher_id=body.teacher_id,
            weekdays=body.weekdays,
            earliest=body.earliest,
            latest=body.latest,
            payee_id=payee.id,
            actor=_actor(payee),
        )
        out = EntryOut.model_validate(waitlist.entry_view(session, entry)).model_dump(mode="json")
    return out, 201


@bp.get("/waitlist", responses={200: EntryList})
def list_entries_route():
    """The family's waiting-list entries (open and booked), oldest first."""
    with session_scope(write=False) as session:
        payee = _payee(session)
        items = [waitlist.entry_view(session, entry) for entry in waitlist.list_entries(session, payee_id=payee.id, status=None)]
    return EntryList.model_validate({"items": items}).model_dump(mode="json")


@bp.delete("/waitlist/<int:entry_id>", responses={204: None, 409: Problem})
def remove_entry_route(path: EntryPath):
    """Take an entry off the waiting list (204); a booked one is 409; another family's is 404."""
    with session_scope() as session:
        payee = _payee(session)
        entry = waitlist.get_entry(session, path.entry_id, payee_id=payee.id)
        waitlist.remove_entry(session, entry, actor=_actor(payee))
    return "", 204


@bp.get("/offers", responses={200: OfferList})
def list_offers_route():
    """The family's offers, newest first: `open` until `expires_at`, then `lapsed`; or `accepted`, `declined`."""
    with session_scope(write=False) as session:
        payee = _payee(session)
        items = [offers.offer_view(offer) for offer in offers.list_offers(session, payee_id=payee.id)]
    return OfferList.model_validate({"items": items}).model_dump(mode="json")


@bp.post("/offers/<int:offer_id>/accept", responses={202: OfferAccepted, 409: Problem})
def accept_offer_route(path: OfferPath, body: OfferAccept):
    """Accept an open offer with a plan: the ordinary booking (202, `provisional`, then the
    Stripe pipeline as `POST /parent/bookings`). An offer accepted, declined or lapsed already
    is 409 `offer-closed`; the booking rules' refusals (holds, card) are their 409s."""
    from workers.tasks import book_enrollment

    with session_scope() as session:
        payee = _payee(session)
        booking = offers.accept_offer(session, payee=payee, offer_id=path.offer_id, plan=body.plan, actor=_actor(payee))
        booking_id = booking.id
        out = OfferAccepted(
            id=booking_id, status=booking.status, expires_at=booking.provisional_expires_at, status_url=_status_url(booking_id)
        ).model_dump(mode="json")
        after_commit(session, lambda: book_enrollment(booking_id))
    return out, 202, {"Location": out["status_url"]}


@bp.post("/offers/<int:offer_id>/decline", responses={200: OfferOut, 409: Problem})
def decline_offer_route(path: OfferPath):
    """Decline an open offer: the slot goes to the next fitting entry. Closed already: 409 `offer-closed`."""
    with session_scope() as session:
        payee = _payee(session)
        offer = offers.decline_offer(session, payee_id=payee.id, offer_id=path.offer_id, actor=_actor(payee))
        out = OfferOut.model_validate(offers.offer_view(offer)).model_dump(mode="json")
    return out
