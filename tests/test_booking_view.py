"""`GET /parent/bookings/<id>` and the bookings list show a booking's end, whether it ends with
the period paid for, and the bookings a move joins (issue 13, item 6). Both engines."""

from __future__ import annotations

from datetime import date

import pytest

from models.enrollment import Enrollment
from models.people import Payee
from tests import factories
from tests.support.api import Studio, assert_problem


def _enrollment(session, student_id: int, slot_id: int, *, start: date, **extra) -> Enrollment:
    row = Enrollment(
        student_id=student_id,
        timeslot_id=slot_id,
        instrument_id=factories.instrument(session).id,
        status="active",
        offline=True,
        start_date=start,
        **extra,
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def moved(session, studio: Studio, family_a, family_b):
    """Family A's booking moved from the studio's first slot to its second on Nov 2, a third
    booking cancelled at its period end, and family B's booking on a third slot."""
    ada = factories.student(session, payee_row=session.get(Payee, family_a.payee_id), name="Ada")
    old = _enrollment(session, ada.id, studio.slot_id, start=date(2026, 9, 7), end_date=date(2026, 10, 26))
    new = _enrollment(session, ada.id, studio.other_slot_ids[0], start=date(2026, 11, 2), moved_from_id=old.id)
    ending = _enrollment(
        session, ada.id, studio.other_slot_ids[1], start=date(2026, 9, 7), end_date=date(2026, 11, 30), cancel_at_period_end=True
    )
    zoe = factories.student(session, payee_row=session.get(Payee, family_b.payee_id), name="Zoe")
    theirs = _enrollment(session, zoe.id, studio.other_slot_ids[2], start=date(2026, 9, 7))
    session.commit()
    return {"old": old.id, "new": new.id, "ending": ending.id, "theirs": theirs.id}


def _fields(body: dict) -> tuple:
    return body["end_date"], body["cancel_at_period_end"], body["moved_from"], body["moved_to"]


def test_a_booking_shows_its_end_its_cancel_at_period_end_and_its_move(client, family_a, moved):
    get = lambda booking_id: client.get(f"/parent/bookings/{booking_id}", headers=family_a.headers)  # noqa: E731
    assert _fields(get(moved["old"]).get_json()) == ("2026-10-26", False, None, moved["new"])
    assert _fields(get(moved["new"]).get_json()) == (None, False, moved["old"], None)
    assert _fields(get(moved["ending"]).get_json()) == ("2026-11-30", True, None, None)
    listed = {item["id"]: _fields(item) for item in client.get("/parent/bookings", headers=family_a.headers).get_json()["items"]}
    assert listed == {
        moved["old"]: ("2026-10-26", False, None, moved["new"]),
        moved["new"]: (None, False, moved["old"], None),
        moved["ending"]: ("2026-11-30", True, None, None),
    }


def test_another_familys_booking_is_404_and_its_move_is_not_shown(client, session, family_a, family_b, moved):
    for booking_id in (moved["old"], moved["new"], moved["ending"]):
        assert_problem(client.get(f"/parent/bookings/{booking_id}", headers=family_b.headers), 404, "not-found")
    assert_problem(client.get(f"/parent/bookings/{moved['theirs']}", headers=family_a.headers), 404, "not-found")
    # A row of another family naming A's booking (no move makes one): A never sees its id.
    stranger = _enrollment(
        session,
        session.get(Enrollment, moved["theirs"]).student_id,
        factories.timeslot(session, weekday=4).id,
        start=date(2026, 12, 4),
        moved_from_id=moved["ending"],
    )
    session.commit()
    assert client.get(f"/parent/bookings/{moved['ending']}", headers=family_a.headers).get_json()["moved_to"] is None
    assert client.get(f"/parent/bookings/{stranger.id}", headers=family_b.headers).get_json()["moved_from"] == moved["ending"]
