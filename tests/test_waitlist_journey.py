"""A freed slot's whole journey (issue 14), through the admin CLI, the parent API, the task queue
and the local Stripe server: cancel → offer → lapse → next offer → accepted → active. Both engines.

Run with `-s` to see the journey as a transcript (the closing note of issue 14 shows one).
"""

from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlmodel import select

from models import waitlist
from models.base import utcnow
from models.enrollment import ACTIVE, CANCELLED, EXPIRED, Enrollment
from models.outbox import EmailLog
from models.people import Payee
from tests import factories
from tests.support.api import bearer, register
from tests.support.booking import add_card, family_booking
from tests.support.cli import ok
from workers.offers import offer_freed_slots


def _step(transcript: list[str], line: str) -> None:
    transcript.append(line)
    print(line)


def _offers(client, family) -> list[tuple[int, str]]:
    items = client.get("/parent/offers", headers=family.headers).get_json()["items"]
    return [(item["id"], item["status"]) for item in items]


def test_a_freed_slot_goes_cancel_offer_lapse_next_offer_accepted_active(session, client, stripe_env, task_queue):
    transcript: list[str] = []
    holder, _ = family_booking(session, stripe_env, task_queue, sub="user-holder")
    slot_id, teacher_id = holder.timeslot_id, session.get(factories.Timeslot, holder.timeslot_id).teacher_id
    holder_subscription = holder.stripe_subscription_id
    first = register(client, "user-first", "first@family.test", "Fay First")
    second = register(client, "user-second", "second@family.test", "Sam Second")
    first_student = factories.student(session, payee_row=session.get(Payee, first.payee_id), name="Finn")
    second_student = factories.student(session, payee_row=session.get(Payee, second.payee_id), name="Sara")
    session.commit()
    add_card(stripe_env.client(), second.payee_id)  # the second family has a card on file
    for family, student in ((first, first_student), (second, second_student)):
        created = client.post(
            "/parent/waitlist",
            json={"student_id": student.id, "instrument": "piano", "teacher_id": teacher_id},
            headers=family.headers,
        )
        assert created.status_code == 201, created.get_json()
    _step(
        transcript, f"slot {slot_id} held by enrollment {holder.id} (active, Stripe {holder_subscription}); two families waiting"
    )
    task_queue.clear()

    ok("enrollments", "cancel", str(holder.id), "--reason", "moving away")
    task_queue.run_all()  # the Stripe cancellation and the matching, after the commit
    session.expire_all()
    assert session.get(Enrollment, holder.id).status == CANCELLED
    assert stripe_env.client().v1.subscriptions.retrieve(holder_subscription).status == "canceled"
    _step(transcript, f"studioctl enrollments cancel {holder.id} → cancelled; Stripe subscription canceled")

    [(first_offer, status)] = _offers(client, first)
    assert status == "open" and _offers(client, second) == []
    offer_row = session.get(waitlist.WaitlistOffer, first_offer)
    assert offer_row.timeslot_id == slot_id
    mailed = session.exec(select(EmailLog.recipient).where(EmailLog.template == "waitlist_offer")).all()
    assert mailed == ["first@family.test"]
    _step(
        transcript,
        f"offer {first_offer} → Fay First (open until {offer_row.expires_at:%Y-%m-%d %H:%M} UTC; waitlist_offer emailed)",
    )

    with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1), tick=False):
        summary = offer_freed_slots()
        assert summary["lapsed"] == [first_offer] and len(summary["offered"]) == 1
        first.headers, second.headers = bearer(first.sub, first.email), bearer(second.sub, second.email)
        assert _offers(client, first) == [(first_offer, "lapsed")]
        session.expire_all()
        assert session.get(Enrollment, offer_row.enrollment_id).status == EXPIRED
        _step(transcript, f"24 h later: offer_freed_slots → offer {first_offer} lapsed (its hold expired)")
        [(second_offer, status)] = _offers(client, second)
        assert status == "open"
        _step(transcript, f"offer {second_offer} → Sam Second (open)")

        plan = factories.plan(session)
        session.commit()
        task_queue.clear()
        accepted = client.post(f"/parent/offers/{second_offer}/accept", json={"plan": plan.id}, headers=second.headers)
        assert accepted.status_code == 202, accepted.get_json()
        booking_id = accepted.get_json()["id"]
        _step(transcript, f"POST /parent/offers/{second_offer}/accept → 202, booking {booking_id} provisional")
        assert _offers(client, second) == [(second_offer, "accepted")]

        task_queue.run_all()  # the booking pipeline against the local Stripe server
        answer = client.get(f"/parent/bookings/{booking_id}", headers=second.headers).get_json()
    session.expire_all()
    booking = session.get(Enrollment, booking_id)
    assert answer["status"] == ACTIVE == booking.status
    assert (booking.timeslot_id, booking.student_id) == (slot_id, second_student.id)
    subscription = stripe_env.client().v1.subscriptions.retrieve(booking.stripe_subscription_id)
    assert subscription.status == "active" and subscription.customer == session.get(Payee, second.payee_id).stripe_customer_id
    confirmations = session.exec(select(EmailLog.recipient).where(EmailLog.template == "booking_confirmation")).all()
    assert "second@family.test" in confirmations
    _step(transcript, f"pipeline → booking {booking_id} active (Stripe {subscription.id} active); booking_confirmation emailed")
    # The slot is the second family's now: no offer left open, the first family's entry stays open.
    assert offer_freed_slots() == {"lapsed": [], "offered": []}
    assert session.get(waitlist.WaitlistEntry, offer_row.entry_id).status == waitlist.OPEN
