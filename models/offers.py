"""Offers of freed slots to the waiting list (issue 14): the matching, acceptance, decline, lapse.

A slot that becomes bookable is offered to the earliest open entry that fits it (the teacher
teaches the entry's instrument; its teacher, weekdays and time window fit; the entry was never
offered this slot before and holds no other open offer). The offer is an enrollment of status
`offered` made through the booking door (`models.booking`), so the slot's row lock and the
database's date-range rule allow one live offer per slot whoever runs the matching; it holds
the slot for `OFFER_HOURS`. Acceptance ends the offer's hold and books the slot through the
ordinary door (`hold_slot`: provisional, then the Stripe pipeline) in one transaction under the
offer's row lock, so an offer is accepted once. Decline and lapse end the hold: the next entry
gets the slot.

Slots freed by any unit of work (an enrollment leaving the live statuses, or given an end) are
noted by a session hook and handed after commit to the dispatcher a process installs
(`set_slot_dispatcher`: the consumer's task); the periodic `offer_freed_slots` is the safety net.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from models.audit import record_audit, snapshot
from models.base import utcnow
from models.booking import _new_enrollment, hold_slot
from models.clock import format_minute, occurrence_start, weekday_label
from models.config import get_settings
from models.db import after_commit, lock_row
from models.enrollment import EXPIRED, LIVE_STATUSES, OFFERED, Enrollment
from models.errors import Invalid, NotFound, SlotTaken
from models.outbox import queue_email
from models.people import HoldingFamily, Instrument, Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Timeslot
from models.sms import queue_sms
from models.waitlist import (
    BOOKED,
    OFFER_ACCEPTED,
    OFFER_DECLINED,
    OFFER_LAPSED,
    OFFER_OPEN,
    OPEN,
    OfferClosed,
    WaitlistEntry,
    WaitlistOffer,
)

FREED_KEY = "waitlist_freed_slots"
_slot_dispatcher: Callable[[int], object] | None = None


def set_slot_dispatcher(dispatcher: Callable[[int], object] | None) -> None:
    """Install what matches freed slot `id` after commit (the consumer's task; None: the job does)."""
    global _slot_dispatcher
    _slot_dispatcher = dispatcher


def _freed_by(obj: object) -> int | None:
    """The slot a flushed change made bookable: an enrollment leaving the live statuses or
    given an end date, a slot published (new and active) or reactivated."""
    if isinstance(obj, Enrollment):
        state = sa.inspect(obj)
        status, end = state.attrs.status.history, state.attrs.end_date.history
        left = bool(status.deleted) and status.deleted[0] in LIVE_STATUSES and obj.status not in LIVE_STATUSES
        ended = bool(end.deleted) and obj.end_date is not None and obj.status in LIVE_STATUSES
        return obj.timeslot_id if left or ended else None
    if isinstance(obj, Timeslot) and obj.active:
        active = sa.inspect(obj).attrs.active.history
        return obj.id if active.added and (not active.deleted or active.deleted[0] is False) else None
    return None


def _note_freed_slots(session: OrmSession, _context) -> None:
    """After a flush: the slots it made bookable, handed to the dispatcher after commit."""
    dispatcher = _slot_dispatcher
    if dispatcher is None:
        return
    freed: set[int] = session.info.setdefault(FREED_KEY, set())
    for obj in [*session.new, *session.dirty]:
        slot_id = _freed_by(obj)
        if slot_id is not None and slot_id not in freed:
            freed.add(slot_id)
            after_commit(session, functools.partial(dispatcher, slot_id))  # type: ignore[arg-type]


def _forget_freed_slots(session: OrmSession, *_args) -> None:
    session.info.pop(FREED_KEY, None)


event.listen(OrmSession, "after_flush", _note_freed_slots)
event.listen(OrmSession, "after_commit", _forget_freed_slots)
event.listen(OrmSession, "after_rollback", _forget_freed_slots)


# Matching --------------------------------------------------------------------------------


def _candidates(session: Session, slot: Timeslot) -> list[tuple[WaitlistEntry, str]]:
    """Open entries that may take `slot`, oldest first, with their instrument's name."""
    offered_before = select(WaitlistOffer.id).where(
        col(WaitlistOffer.entry_id) == col(WaitlistEntry.id),
        sa.or_(col(WaitlistOffer.timeslot_id) == slot.id, col(WaitlistOffer.status) == OFFER_OPEN),
    )
    on_slot = select(Enrollment.id).where(
        col(Enrollment.student_id) == col(WaitlistEntry.student_id),
        col(Enrollment.timeslot_id) == slot.id,
        col(Enrollment.status).in_(LIVE_STATUSES),
    )
    statement = (
        select(WaitlistEntry, Instrument.name)
        .join(Student, col(Student.id) == col(WaitlistEntry.student_id))
        .join(Instrument, col(Instrument.id) == col(WaitlistEntry.instrument_id))
        .join(
            TeacherInstrument,
            sa.and_(
                col(TeacherInstrument.instrument_id) == col(WaitlistEntry.instrument_id),
                col(TeacherInstrument.teacher_id) == slot.teacher_id,
            ),
        )
        .where(
            col(WaitlistEntry.status) == OPEN,
            col(Student.archived_at).is_(None),
            sa.or_(col(WaitlistEntry.teacher_id).is_(None), col(WaitlistEntry.teacher_id) == slot.teacher_id),
            ~sa.exists(offered_before),
            ~sa.exists(on_slot),
        )
        .order_by(col(WaitlistEntry.created_at), col(WaitlistEntry.id))
    )
    return [
        (entry, name)
        for entry, name in session.exec(statement).all()
        if entry.fits(teacher_id=slot.teacher_id, weekday=slot.weekday, start_minute=slot.start_minute)
    ]


def anyone_waiting(session: Session, timeslot_id: int) -> bool:
    """Whether an open entry may take the slot (a cheap look before enqueueing the matching)."""
    slot = session.get(Timeslot, timeslot_id)
    return slot is not None and slot.active and bool(_candidates(session, slot))


def offer_slot(
    session: Session, timeslot_id: int, *, entry_id: int | None = None, actor: str = "worker", now: datetime | None = None
) -> WaitlistOffer | None:
    """Offer a bookable slot to the earliest fitting entry (or to `entry_id`, by the same rules).
    None when nobody fits or the slot is not bookable (held, closed, or just offered by another)."""
    now = now or utcnow()
    slot = session.get(Timeslot, timeslot_id)
    if slot is None:
        raise NotFound(f"no timeslot {timeslot_id}", field="timeslot_id")
    teacher = session.get(Teacher, slot.teacher_id)
    if not slot.active or teacher is None or not teacher.active:
        return None
    candidates = _candidates(session, slot)
    if entry_id is not None:
        candidates = [(entry, name) for entry, name in candidates if entry.id == entry_id]
        if not candidates:
            raise Invalid(f"waiting-list entry {entry_id} does not fit timeslot {timeslot_id}", field="entry")
    for entry, instrument in candidates[:1]:
        try:
            enrollment = _new_enrollment(
                session,
                student_id=entry.student_id,
                timeslot_id=timeslot_id,
                instrument=instrument,
                plan=None,
                start_date=None,
                status=OFFERED,
                offline=False,
                now=now,
                actor=actor,
            )
        except SlotTaken:
            if entry_id is not None:
                raise
            return None
        expires_at = now + timedelta(hours=get_settings().OFFER_HOURS)
        enrollment.provisional_expires_at = expires_at
        session.add(enrollment)
        offer = WaitlistOffer(
            entry_id=entry.id,
            timeslot_id=timeslot_id,
            student_id=entry.student_id,
            enrollment_id=enrollment.id,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        session.add(offer)
        session.flush()
        record_audit(session, actor=actor, action="waitlist.offer", entity=offer, after=snapshot(offer))
        _email_offer(session, offer, slot=slot, teacher=teacher, instrument=instrument, start=enrollment.start_date)
        return offer
    return None


def _email_offer(session: Session, offer: WaitlistOffer, *, slot: Timeslot, teacher: Teacher, instrument: str, start) -> None:
    student = session.get(Student, offer.student_id)
    payee = session.get(Payee, student.payee_id) if student else None
    if student is None or payee is None:
        return
    settings = get_settings()
    queue_email(
        session,
        template="waitlist_offer",
        recipient=payee.email,
        context={
            "studio_name": settings.STUDIO_NAME,
            "payee_name": payee.name,
            "student_name": student.name,
            "instrument": instrument,
            "teacher_name": teacher.name,
            "weekday": weekday_label(slot.weekday),
            "time": format_minute(slot.start_minute),
            "timezone": settings.STUDIO_TIMEZONE,
            "start_date": start.isoformat(),
            "expires_at": offer.expires_at.isoformat(),
            "offer_id": offer.id,
        },
        dedupe_key=f"waitlist_offer:{offer.id}",
    )
    if payee.remind_by_sms and payee.phone:  # the family reads texts: the offer by SMS too
        starts = occurrence_start(start, slot.start_minute, settings.tz)
        queue_sms(
            session,
            template="waitlist_offer",
            recipient=payee.phone,
            context={
                "studio_name": settings.STUDIO_NAME,
                "student_name": student.name,
                "teacher_name": teacher.name,
                "weekday": weekday_label(slot.weekday),
                "lesson_date": start.isoformat(),
                "time": format_minute(slot.start_minute),
                "zone": starts.tzname() or settings.STUDIO_TIMEZONE,
                "offer_id": offer.id,
            },
            dedupe_key=f"waitlist_offer:{offer.id}:sms",
        )


def candidate_slots(session: Session) -> list[int]:
    """Active slots no live enrollment holds forever whose teacher teaches an instrument an
    open entry waits for (what `offer_freed_slots` tries, in id order)."""
    held_forever = select(Enrollment.id).where(
        col(Enrollment.timeslot_id) == col(Timeslot.id),
        col(Enrollment.status).in_(LIVE_STATUSES),
        col(Enrollment.end_date).is_(None),
    )
    waiting = select(WaitlistEntry.id).where(
        col(WaitlistEntry.status) == OPEN,
        col(WaitlistEntry.instrument_id) == col(TeacherInstrument.instrument_id),
        sa.or_(col(WaitlistEntry.teacher_id).is_(None), col(WaitlistEntry.teacher_id) == col(Timeslot.teacher_id)),
    )
    statement = (
        select(Timeslot.id)
        .join(Teacher, col(Teacher.id) == col(Timeslot.teacher_id))
        .join(TeacherInstrument, col(TeacherInstrument.teacher_id) == col(Timeslot.teacher_id))
        .where(col(Timeslot.active).is_(True), col(Teacher.active).is_(True), ~sa.exists(held_forever), sa.exists(waiting))
        .distinct()
        .order_by(col(Timeslot.id))
    )
    return list(session.exec(statement).all())


# The family's answer ---------------------------------------------------------------------


def get_offer(session: Session, offer_id: int, *, payee_id: int | None = None, lock: bool = False) -> WaitlistOffer:
    """An offer by id (locked with `lock`); with `payee_id`, only that family's (others NotFound)."""
    offer = lock_row(session, WaitlistOffer, offer_id) if lock else session.get(WaitlistOffer, offer_id)
    if offer is not None and payee_id is not None:
        student = session.get(Student, offer.student_id)
        if student is None or student.payee_id != payee_id:
            offer = None
    if offer is None:
        raise NotFound(f"no offer {offer_id}", field="offer_id")
    return offer


def list_offers(session: Session, *, payee_id: int | None = None, status: str | None = None) -> list[WaitlistOffer]:
    """Offers newest first; a family's, or all."""
    statement = select(WaitlistOffer)
    if payee_id is not None:
        statement = statement.join(Student, col(Student.id) == col(WaitlistOffer.student_id)).where(
            col(Student.payee_id) == payee_id
        )
    if status is not None:
        statement = statement.where(col(WaitlistOffer.status) == status)
    return list(session.exec(statement.order_by(col(WaitlistOffer.id).desc())).all())


def _close(session: Session, offer: WaitlistOffer, status: str, *, actor: str, now: datetime) -> None:
    """End an open offer and the hold it keeps on the slot."""
    before = snapshot(offer)
    offer.status, offer.updated_at = status, now
    session.add(offer)
    hold = lock_row(session, Enrollment, offer.enrollment_id) if offer.enrollment_id else None
    if hold is not None and hold.status == OFFERED:
        hold.status, hold.cancel_reason, hold.updated_at = EXPIRED, f"waiting-list offer {status}", now
        session.add(hold)
    session.flush()
    record_audit(session, actor=actor, action=f"waitlist.offer_{status}", entity=offer, before=before, after=snapshot(offer))


def _open_offer(session: Session, offer_id: int, payee_id: int | None, now: datetime) -> WaitlistOffer:
    offer = get_offer(session, offer_id, payee_id=payee_id, lock=True)
    if offer.status != OFFER_OPEN:
        raise OfferClosed(f"offer {offer_id} is {offer.status}")
    if offer.expires_at <= now:
        raise OfferClosed(f"offer {offer_id} has lapsed")
    return offer


def accept_offer(
    session: Session, *, payee: HoldingFamily, offer_id: int, plan: str | int, actor: str, now: datetime | None = None
) -> Enrollment:
    """Book an offered slot: the offer's hold ends and the ordinary door makes the provisional
    booking, in one transaction under the offer's row lock. The caller enqueues the booking
    task after commit. A second acceptance finds the offer accepted: OfferClosed."""
    now = now or utcnow()
    offer = _open_offer(session, offer_id, payee.id, now)
    entry = session.get(WaitlistEntry, offer.entry_id)
    instrument = session.get(Instrument, entry.instrument_id) if entry else None
    if entry is None or instrument is None:
        raise NotFound(f"no offer {offer_id}", field="offer_id")
    _close(session, offer, OFFER_ACCEPTED, actor=actor, now=now)
    booking = hold_slot(
        session,
        payee=payee,
        student_id=offer.student_id,
        timeslot_id=offer.timeslot_id,
        instrument=instrument.name,
        plan=plan,
        actor=actor,
        now=now,
    )
    offer.booking_id = booking.id
    entry.status, entry.updated_at = BOOKED, now
    session.add_all([offer, entry])
    session.flush()
    return booking


def decline_offer(session: Session, *, payee_id: int, offer_id: int, actor: str, now: datetime | None = None) -> WaitlistOffer:
    """The family says no: the slot goes to the next fitting entry (after commit, or the job)."""
    now = now or utcnow()
    offer = _open_offer(session, offer_id, payee_id, now)
    _close(session, offer, OFFER_DECLINED, actor=actor, now=now)
    return offer


def lapse_offers(session: Session, *, actor: str = "worker", now: datetime | None = None) -> list[WaitlistOffer]:
    """Open offers past their expiry → lapsed, their holds ended (the slots are offered again)."""
    now = now or utcnow()
    due = session.exec(
        select(WaitlistOffer.id).where(col(WaitlistOffer.status) == OFFER_OPEN, col(WaitlistOffer.expires_at) <= now)
    ).all()
    lapsed = []
    for offer_id in due:
        offer = lock_row(session, WaitlistOffer, offer_id)
        if offer is None or offer.status != OFFER_OPEN:
            continue
        _close(session, offer, OFFER_LAPSED, actor=actor, now=now)
        lapsed.append(offer)
    return lapsed


def offer_view(offer: WaitlistOffer) -> dict:
    """What the API and the CLI show of an offer."""
    return {
        "id": offer.id,
        "entry_id": offer.entry_id,
        "timeslot_id": offer.timeslot_id,
        "student_id": offer.student_id,
        "status": offer.status,
        "expires_at": offer.expires_at,
        "booking_id": offer.booking_id,
    }
