"""A slot is held for dates, not forever: the database's rule (no two live enrollments of a slot
overlap in dates), the booking door, discovery's `available_from` and make-ups. Both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import select

from models.attendance import MakeUp, book_makeup, eligible_makeup_slots
from models.db import session_scope, violates
from models.enrollment import SLOT_DATES_CONSTRAINT, Enrollment
from models.errors import SlotTaken
from models.people import Payee
from tests import factories
from tests.support.api import assert_problem, booking_body

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=NY)  # a Tuesday
ENDS = date(2026, 11, 30)  # the current booking's last day (its last lesson: Tuesday the 24th)


def _enrollment(session, slot, *, start: date, end: date | None = None, status: str = "active") -> Enrollment:
    row = Enrollment(
        student_id=factories.student(session).id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status=status,
        offline=True,
        start_date=start,
        end_date=end,
        provisional_expires_at=datetime.now(UTC) + timedelta(minutes=30) if status == "provisional" else None,
    )
    session.add(row)
    session.flush()
    return row


def _refusal(session, change) -> sa.exc.IntegrityError:
    with pytest.raises(sa.exc.IntegrityError) as caught:
        with session.begin_nested():
            change()
            session.flush()
    return caught.value


# The database's rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end",
    [
        (date(2026, 11, 30), None),  # from its last day on
        (date(2026, 8, 3), date(2026, 9, 1)),  # ending on its first day
        (date(2026, 10, 5), date(2026, 10, 26)),  # inside it
        (date(2026, 6, 1), None),  # before it, forever
    ],
)
def test_the_database_refuses_a_live_enrollment_overlapping_another_of_the_slot(session, start, end):
    slot = factories.timeslot(session)
    _enrollment(session, slot, start=date(2026, 9, 1), end=ENDS)
    error = _refusal(session, lambda: _enrollment(session, slot, start=start, end=end, status="provisional"))
    assert violates(error, SLOT_DATES_CONSTRAINT)
    assert session.scalar(select(sa.func.count()).select_from(Enrollment).where(Enrollment.timeslot_id == slot.id)) == 1


def test_the_database_takes_live_enrollments_of_a_slot_in_successive_dates(session):
    slot = factories.timeslot(session)
    _enrollment(session, slot, start=date(2026, 9, 1), end=ENDS)
    _enrollment(session, slot, start=ENDS + timedelta(days=1))  # from the 1st, forever
    _enrollment(session, slot, start=date(2026, 6, 1), end=date(2026, 8, 31), status="past_due")
    _enrollment(session, slot, start=date(2026, 10, 6), status="cancelled")  # a dead one holds nothing
    _enrollment(session, factories.timeslot(session, weekday=3), start=date(2026, 10, 6))  # another slot
    assert session.scalar(select(sa.func.count()).select_from(Enrollment)) == 5


def test_the_database_refuses_an_update_into_an_overlap(session):
    """An end moved later, a dead enrollment revived, a move onto a held slot: each refused."""
    slot = factories.timeslot(session)
    current = _enrollment(session, slot, start=date(2026, 9, 1), end=ENDS)
    _enrollment(session, slot, start=date(2026, 12, 1))
    dead = _enrollment(session, slot, start=date(2026, 10, 6), status="expired")
    elsewhere = _enrollment(session, factories.timeslot(session, weekday=3), start=date(2026, 10, 6))

    def change(row, **values):
        def apply():
            for name, value in values.items():
                setattr(row, name, value)
            session.add(row)

        return apply

    for row, values in (
        (current, {"end_date": date(2026, 12, 15)}),
        (current, {"end_date": None}),
        (dead, {"status": "active"}),
        (elsewhere, {"timeslot_id": slot.id}),
    ):
        assert violates(_refusal(session, change(row, **values)), SLOT_DATES_CONSTRAINT), values
        session.refresh(row)
    current.end_date = date(2026, 11, 10)  # shorter is fine
    current.cancel_at_period_end = True
    session.add(current)
    session.flush()


def test_other_integrity_errors_are_not_the_date_rule(session):
    slot = factories.timeslot(session)
    row = _enrollment(session, slot, start=date(2026, 9, 1), end=ENDS)
    error = _refusal(session, lambda: setattr(row, "end_date", date(2026, 8, 1)))  # before its start
    assert not violates(error, SLOT_DATES_CONSTRAINT)


# The booking door and discovery -----------------------------------------------------------


@pytest.fixture
def tuesday(session, family_b):
    """A piano teacher's Tuesday 16:00 slot held by another family's active booking until the 30th."""
    teacher = factories.teacher(session, instruments=("piano",))
    slot = factories.timeslot(session, teacher_row=teacher, weekday=1, start="16:00")
    plan = factories.plan(session)
    holder = factories.student(session, payee_row=session.get(Payee, family_b.payee_id))
    current = Enrollment(
        student_id=holder.id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status="active",
        offline=True,
        start_date=date(2026, 9, 1),
        end_date=ENDS,
    )
    session.add(current)
    session.commit()
    return {"slot_id": slot.id, "plan_id": plan.id, "current_id": current.id}


def _listed(client, slot_id: int, query: str = "") -> dict | None:
    items = client.get(f"/public/timeslots{query}").get_json()["items"]
    return next((item for item in items if item["id"] == slot_id), None)


def test_a_slot_whose_booking_ends_on_the_30th_is_bookable_from_the_1st(client, session, family_a, tuesday):
    student = family_a.add_student(client)
    with time_machine.travel(NOW, tick=False):
        listed = _listed(client, tuesday["slot_id"], "?available=true")
        assert listed is not None and listed["available"] is True
        assert listed["available_from"] == "2026-12-01"
        assert listed["next_occurrence"].startswith("2026-11-03T16:00")  # its lessons still run meanwhile
        # The 24th is still the current family's: 409, saying from when the slot is free.
        inside = client.post(
            "/parent/bookings",
            json=booking_body(student, tuesday["slot_id"], tuesday["plan_id"], start_date="2026-11-24"),
            headers=family_a.headers,
        )
        assert "free from 2026-12-01" in assert_problem(inside, 409, "slot-taken")["detail"]
        booked = client.post(
            "/parent/bookings",
            json=booking_body(student, tuesday["slot_id"], tuesday["plan_id"], start_date="2026-12-01"),
            headers=family_a.headers,
        )
        assert booked.status_code == 202, booked.get_json()
        booking = client.get(booked.headers["Location"], headers=family_a.headers).get_json()
        assert booking["start_date"] == "2026-12-01" and booking["status"] == "provisional"
        # Now held from the 1st on, forever: no longer available, from no date.
        assert _listed(client, tuesday["slot_id"], "?available=true") is None
        held = _listed(client, tuesday["slot_id"], "?available=false")
        assert held is not None and held["available"] is False and held["available_from"] is None
    live = session.exec(select(Enrollment.id).where(Enrollment.timeslot_id == tuesday["slot_id"], Enrollment.status != "expired"))
    assert sorted(live.all()) == sorted([tuesday["current_id"], booking["id"]])


def test_without_a_start_date_a_booking_starts_when_the_slot_frees(client, session, family_a, tuesday):
    student = family_a.add_student(client)
    with time_machine.travel(NOW, tick=False):
        booked = client.post(
            "/parent/bookings", json=booking_body(student, tuesday["slot_id"], tuesday["plan_id"]), headers=family_a.headers
        )
        assert booked.status_code == 202, booked.get_json()
        assert client.get(booked.headers["Location"], headers=family_a.headers).get_json()["start_date"] == "2026-12-01"


def test_a_free_slot_is_available_from_its_next_lesson_and_a_makeup_pushes_it(client, session, family_a, tuesday):
    """A free slot: `available_from` is its next lesson not started yet; a booked make-up on
    one of its dates owns it, so a booking (and `available_from`) starts after it."""
    teacher = factories.teacher(session, instruments=("piano",))
    free = factories.timeslot(session, teacher_row=teacher, weekday=1, start="11:00")  # today's ran at 11:00
    session.commit()
    with time_machine.travel(NOW, tick=False):
        assert _listed(client, free.id)["available_from"] == "2026-11-10"
        credit = MakeUp(
            student_id=factories.student(session).id,
            status="booked",
            timeslot_id=free.id,
            lesson_date=date(2026, 11, 17),
            expires_on=date(2026, 12, 31),
        )
        session.add(credit)
        session.commit()
        assert _listed(client, free.id)["available_from"] == "2026-11-24"


# Make-ups ---------------------------------------------------------------------------------


def test_a_makeup_goes_on_a_slot_date_no_live_enrollment_covers(session, tuesday):
    """The slot's dates up to the 30th are the current booking's; after it, free for a make-up."""
    factories.semester(session, starts=date(2026, 9, 1), ends=date(2026, 12, 19), makeup_ends=date(2026, 12, 23))
    with time_machine.travel(NOW, tick=False):
        credit = MakeUp(student_id=factories.student(session).id, expires_on=date(2026, 12, 23))
        session.add(credit)
        session.commit()
        options = {day for slot, day in eligible_makeup_slots(session, credit) if slot.id == tuesday["slot_id"]}
        assert options == {date(2026, 12, 1), date(2026, 12, 8), date(2026, 12, 15), date(2026, 12, 22)}
        with pytest.raises(SlotTaken):
            with session_scope() as unit:
                book_makeup(
                    unit,
                    unit.get(MakeUp, credit.id),
                    timeslot_id=tuesday["slot_id"],
                    lesson_date=date(2026, 11, 24),
                    actor="admin",
                )
        with session_scope() as unit:
            booked = book_makeup(
                unit, unit.get(MakeUp, credit.id), timeslot_id=tuesday["slot_id"], lesson_date=date(2026, 12, 1), actor="admin"
            )
            assert booked.status == "booked"
