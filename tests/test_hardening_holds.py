"""Issue 11, item 5: slot hoarding by families without a card on file.

The defaults, not the suite's relaxed card-less caps: one hold of 10 minutes per family
without a card, at most MAX_CARDLESS_HOLDS such holds in the studio; beyond either, 409
card-required pointing at /parent/payment-setup, and nothing written. A family with a card
keeps MAX_HOLDS_PER_PAYEE holds of PROVISIONAL_HOLD_MINUTES.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from models.enrollment import Enrollment
from models.people import Payee
from tests.support.api import assert_problem, booking_body, make_app, register


@pytest.fixture
def defaults(monkeypatch, db):
    for name in ("CARDLESS_HOLDS_PER_PAYEE", "CARDLESS_HOLD_MINUTES", "MAX_CARDLESS_HOLDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAX_CARDLESS_HOLDS", "2")  # the studio-wide cap, small enough to reach
    return make_app().test_client()


def _holds(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Enrollment).where(Enrollment.status == "provisional"))


def _minutes_left(answer) -> float:
    expires = datetime.fromisoformat(answer.get_json()["expires_at"])
    return (expires - datetime.now(expires.tzinfo)) / timedelta(minutes=1)


def test_item_05_a_family_without_a_card_holds_one_slot_for_ten_minutes(defaults, session, studio):
    client = defaults
    family = register(client, "user-h1", "h1@family.test")
    student = family.add_student(client)
    first = client.post("/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family.headers)
    assert first.status_code == 202
    assert 9 < _minutes_left(first) <= 10
    second = client.post(
        "/parent/bookings", json=booking_body(student, studio.other_slot_ids[0], studio.plan_id), headers=family.headers
    )
    body = assert_problem(second, 409, "card-required")
    assert "/parent/payment-setup" in body["detail"]
    assert _holds(session) == 1


def test_item_05_card_less_holds_are_capped_studio_wide_but_card_holders_still_book(defaults, session, studio):
    client = defaults
    slots = [studio.slot_id, *studio.other_slot_ids]
    for n in range(2):
        family = register(client, f"user-c{n}", f"c{n}@family.test")
        answer = client.post(
            "/parent/bookings", json=booking_body(family.add_student(client), slots[n], studio.plan_id), headers=family.headers
        )
        assert answer.status_code == 202
    late = register(client, "user-c2", "c2@family.test")
    refused = client.post(
        "/parent/bookings", json=booking_body(late.add_student(client), slots[2], studio.plan_id), headers=late.headers
    )
    assert "/parent/payment-setup" in assert_problem(refused, 409, "card-required")["detail"]
    assert _holds(session) == 2

    carded = register(client, "user-k", "k@family.test")
    session.execute(sa.update(Payee).where(Payee.id == carded.payee_id).values(stripe_payment_method_id="pm_on_file"))
    session.commit()
    student = carded.add_student(client)
    held = client.post("/parent/bookings", json=booking_body(student, slots[2], studio.plan_id), headers=carded.headers)
    assert held.status_code == 202 and 29 < _minutes_left(held) <= 30
    again = client.post("/parent/bookings", json=booking_body(student, slots[3], studio.plan_id), headers=carded.headers)
    assert again.status_code == 202  # a card holder keeps MAX_HOLDS_PER_PAYEE (3)


@pytest.mark.postgres
def test_item_05_racing_card_less_families_never_pass_the_studio_wide_cap(monkeypatch, committed_db, engine_name):
    from models.db import session_scope
    from tests import factories
    from tests.support.jwt_tokens import backend_token

    monkeypatch.setenv("MAX_CARDLESS_HOLDS", "3")
    for name in ("CARDLESS_HOLDS_PER_PAYEE", "CARDLESS_HOLD_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    with session_scope() as session:
        teacher = factories.teacher(session, instruments=("piano",))
        slots = [factories.timeslot(session, teacher_row=teacher, weekday=4, start=f"{h}:00").id for h in range(10, 20)]
        plan_id = factories.plan(session).id
        families = []
        for n in range(10):
            payee = factories.payee(session, email=f"race{n}@family.test", supabase_user_id=f"race-{n}")
            families.append((f"race-{n}", f"race{n}@family.test", factories.student(session, payee_row=payee).id))
    app = make_app()
    answers: list[int] = []
    start = threading.Barrier(len(families))

    def book(index: int) -> None:
        sub, email, student = families[index]
        client = app.test_client()
        start.wait()
        answer = client.post(
            "/parent/bookings",
            json=booking_body(student, slots[index], plan_id),
            headers={"Authorization": f"Bearer {backend_token(sub, email)}"},
        )
        answers.append(answer.status_code)

    threads = [threading.Thread(target=book, args=(index,)) for index in range(len(families))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202] * 3 + [409] * 7
    with session_scope(write=False) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Enrollment).where(Enrollment.status == "provisional")) == 3
