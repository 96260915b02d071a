"""`studioctl timeslots | semesters` on both engines."""

from __future__ import annotations

import pytest
from sqlmodel import select

from models.scheduling import Timeslot
from tests import factories
from tests.support.cli import audit_actions, ok, ok_json, refused, row_counts


@pytest.fixture(autouse=True)
def _db(db):
    return db


def test_publish_makes_half_hour_slots_and_skips_existing(session):
    teacher = factories.teacher(session)
    factories.timeslot(session, teacher_row=teacher, weekday=0, start="16:00")
    result = ok_json("timeslots", "publish", "--teacher", teacher.email, "--weekday", "mon", "--from", "15:00", "--to", "17:00")
    assert [slot["start"] for slot in result["created"]] == ["15:00", "15:30", "16:30"]
    assert [slot["start"] for slot in result["skipped"]] == ["16:00"]
    starts = session.exec(
        select(Timeslot.start_minute).where(Timeslot.teacher_id == teacher.id).order_by(Timeslot.start_minute)
    ).all()
    assert starts == [900, 930, 960, 990]
    assert [action for _, action in audit_actions(session)] == ["timeslot.add"] * 3
    assert (
        "published 0 slot(s), skipped 4 existing"
        in ok("timeslots", "publish", "--teacher", str(teacher.id), "--weekday", "0", "--from", "15:00", "--to", "17:00").stdout
    )


def test_timeslot_refusals_change_nothing(session):
    teacher = factories.teacher(session)
    factories.timeslot(session, teacher_row=teacher, weekday=1, start="16:00")
    before = row_counts(session)
    refused("timeslots", "add", "--teacher", teacher.email, "--weekday", "tue", "--at", "16:00", message="already has a slot")
    refused("timeslots", "add", "--teacher", teacher.email, "--weekday", "tue", "--at", "16:15", message="not on the half hour")
    refused("timeslots", "add", "--teacher", teacher.email, "--weekday", "funday", "--at", "16:00", message="is not a weekday")
    refused(
        "timeslots",
        "publish",
        "--teacher",
        teacher.email,
        "--weekday",
        "tue",
        "--from",
        "18:00",
        "--to",
        "15:00",
        message="empty or reversed",
    )
    refused("timeslots", "add", "--teacher", "ghost@studio.example", "--weekday", "tue", "--at", "10:00", message="no teacher")
    refused("timeslots", "deactivate", "99999", message="no timeslot 99999")
    assert row_counts(session) == before


def test_list_filters_and_availability(session):
    ada, bob = factories.teacher(session), factories.teacher(session)
    monday = factories.timeslot(session, teacher_row=ada, weekday=0, start="15:00")
    tuesday = factories.timeslot(session, teacher_row=ada, weekday=1, start="15:00")
    bobs = factories.timeslot(session, teacher_row=bob, weekday=0, start="15:00")
    assert {row["id"] for row in ok_json("timeslots", "list", "--teacher", ada.email)} == {monday.id, tuesday.id}
    assert {row["id"] for row in ok_json("timeslots", "list", "--weekday", "mon")} == {monday.id, bobs.id}
    off = ok_json("timeslots", "deactivate", str(monday.id))
    assert off["active"] is False and off["available"] is False
    assert {row["id"] for row in ok_json("timeslots", "list", "--available")} == {tuesday.id, bobs.id}
    ok("timeslots", "activate", str(monday.id))
    assert {row["id"] for row in ok_json("timeslots", "list", "--available", "--weekday", "0")} == {monday.id, bobs.id}
    assert [action for _, action in audit_actions(session)] == ["timeslot.deactivate", "timeslot.activate"]


def test_semesters_and_closures(session):
    fall = ok_json(
        "semesters",
        "add",
        "--name",
        "Fall 2026",
        "--starts",
        "2026-09-07",
        "--ends",
        "2026-12-19",
        "--makeup-ends",
        "2027-01-16",
        "--closure",
        "2026-11-26",
        "--closure",
        "2026-10-12",
    )
    assert fall["closures"] == ["2026-10-12", "2026-11-26"] and fall["makeup_starts_on"] == "2026-09-07"
    assert ok_json("semesters", "closures", "add", str(fall["id"]), "2026-11-27")["closures"][-1] == "2026-11-27"
    assert ok_json("semesters", "closures", "remove", str(fall["id"]), "2026-10-12")["closures"] == ["2026-11-26", "2026-11-27"]
    assert ok_json("semesters", "show", str(fall["id"]))["name"] == "Fall 2026"
    assert [row["id"] for row in ok_json("semesters", "list")] == [fall["id"]]
    before = row_counts(session)
    refused("semesters", "add", "--name", "Overlap", "--starts", "2026-12-01", "--ends", "2027-01-30", message="overlap")
    refused("semesters", "add", "--name", "Backwards", "--starts", "2027-05-01", "--ends", "2027-01-30", message="ends before")
    refused(
        "semesters",
        "add",
        "--name",
        "X",
        "--starts",
        "2027-02-01",
        "--ends",
        "2027-05-01",
        "--closure",
        "2027-06-01",
        message="outside",
    )
    refused("semesters", "closures", "add", str(fall["id"]), "2026-11-26", message="already a closure")
    refused("semesters", "closures", "remove", str(fall["id"]), "2026-11-25", message="is not a closure")
    refused("semesters", "show", "4242", message="no semester 4242")
    assert row_counts(session) == before
    assert [action for _, action in audit_actions(session)] == [
        "semester.add",
        "semester.closure.add",
        "semester.closure.add",
        "semester.closure.add",
        "semester.closure.remove",
    ]
