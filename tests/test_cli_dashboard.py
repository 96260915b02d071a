"""`studioctl dashboard | term-preview | export` on both engines: DST and closures included."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from models.billing import StripeEvent
from models.booking import assign_enrollment, hold_slot
from tests import factories
from tests.support.cli import ok, ok_json, refused

NOW = datetime(2026, 10, 20, 14, 0, tzinfo=UTC)  # Tuesday 10:00 in New York


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def studio(db, session):
    ada = factories.teacher(session, name="Ada", instruments=("piano",))
    bob = factories.teacher(session, name="Bob", instruments=("piano", "drums"))
    late, early, other = (
        factories.timeslot(session, teacher_row=ada, weekday=0, start="17:00"),
        factories.timeslot(session, teacher_row=bob, weekday=0, start="15:30"),
        factories.timeslot(session, teacher_row=ada, weekday=0, start="16:00"),
    )
    fall = factories.semester(
        session,
        name="Fall",
        starts=date(2026, 9, 7),
        ends=date(2026, 12, 19),
        makeup_ends=date(2027, 1, 16),
        closures=(date(2026, 11, 9),),
    )
    family = factories.payee(session, name="Garcia")
    mia, leo = (
        factories.student(session, payee_row=family, name="Mia"),
        factories.student(session, payee_row=family, name="Leo"),
    )
    monthly = factories.plan(session, frequency="monthly", amount_cents=12000)
    weekly = factories.plan(session, frequency="weekly", amount_cents=3500)
    first = assign_enrollment(
        session, student_id=mia.id, timeslot_id=late.id, instrument="piano", plan=monthly.id, offline=True, actor="admin"
    )
    second = assign_enrollment(
        session, student_id=leo.id, timeslot_id=early.id, instrument="drums", plan=weekly.id, offline=True, actor="admin"
    )
    session.flush()  # the audit rows too: the CLI reads through its own session
    return {
        "slots": (late, early, other),
        "semester": fall,
        "family": family,
        "enrollments": (first, second),
        "students": (mia, leo),
    }


def test_today_lists_lessons_and_makeups_by_start(studio):
    first, second = studio["enrollments"]
    ok("attendance", "mark", "--enrollment", first.id, "--date", "2026-10-26", "--status", "excused")
    credit = ok_json("makeups", "list")[0]
    ok("makeups", "book", credit["id"], "--timeslot", studio["slots"][2].id, "--date", "2026-10-26")
    today = ok_json("dashboard", "today", "--date", "2026-10-26")
    assert today["date"] == "2026-10-26" and today["closed"] is False
    assert [
        (e["start"], e["teacher"], e["student"], e["instrument"], e["kind"], e["enrollment_id"], e["attendance"])
        for e in today["lessons"]
    ] == [
        ("15:30", "Bob", "Leo", "drums", "lesson", second.id, None),
        ("16:00", "Ada", "Mia", "piano", "make_up", None, None),
        ("17:00", "Ada", "Mia", "piano", "lesson", first.id, "excused"),
    ]
    table = ok("dashboard", "today", "--date", "2026-10-26").stdout
    assert "make-up" in table and "excused" in table and "unmarked" in table
    assert ok_json("dashboard", "today", "--date", "2026-10-27")["lessons"] == []  # a Tuesday


def test_today_on_a_closure_shows_no_lessons(studio):
    closed = ok_json("dashboard", "today", "--date", "2026-11-09")
    assert closed == {"date": "2026-11-09", "closed": True, "lessons": []}
    assert "studio closed" in ok("dashboard", "today", "--date", "2026-11-09").stdout
    assert len(ok_json("dashboard", "today", "--date", "2026-11-16")["lessons"]) == 2


def test_today_across_dst_keeps_wall_clock_and_flags_the_week(studio):
    # New York falls back on Sunday 2026-11-01.
    before = ok_json("dashboard", "today", "--date", "2026-10-26")["lessons"][0]
    after = ok_json("dashboard", "today", "--date", "2026-11-02")["lessons"][0]
    assert before["start"] == after["start"] == "15:30"
    assert before["starts_at"] == "2026-10-26T15:30:00-04:00" and after["starts_at"] == "2026-11-02T15:30:00-05:00"
    assert (before["dst_change"], after["dst_change"]) == (False, True)
    assert "DST" in ok("dashboard", "today", "--date", "2026-11-02").stdout


def test_today_defaults_to_the_studio_date(studio):
    with time_machine.travel(datetime(2026, 10, 27, 2, 0, tzinfo=UTC), tick=False):  # still Monday in NY
        assert ok_json("dashboard", "today")["date"] == "2026-10-26"
    refused("dashboard", "today", "--date", "26/10/2026", message="is not a date")


def test_provisionals_show_time_left(studio, session):
    other = factories.student(session, payee_row=studio["family"], name="Zoe")
    hold = hold_slot(
        session,
        payee=studio["family"],
        student_id=other.id,
        timeslot_id=studio["slots"][2].id,
        instrument="piano",
        plan="monthly",
        actor="payee",
        now=NOW - timedelta(minutes=10),
    )
    rows = ok_json("dashboard", "provisionals")
    assert [(row["id"], row["student"], row["seconds_left"], row["overdue"]) for row in rows] == [
        (hold.id, "Zoe", 20 * 60, False)
    ]
    assert "20m 00s" in ok("dashboard", "provisionals").stdout


def test_payments_lists_recent_events_and_failures(studio, session):
    session.add(StripeEvent(stripe_event_id="evt_ok", type="invoice.paid", payload={}, status="processed", received_at=NOW))
    session.add(
        StripeEvent(
            stripe_event_id="evt_bad",
            type="invoice.payment_failed",
            payload={},
            status="failed",
            error="customer missing",
            received_at=NOW - timedelta(days=1),
        )
    )
    session.add(
        StripeEvent(
            stripe_event_id="evt_old", type="invoice.paid", payload={}, status="processed", received_at=NOW - timedelta(days=30)
        )
    )
    session.flush()
    activity = ok_json("dashboard", "payments", "--days", "7")
    assert [event["stripe_event_id"] for event in activity["events"]] == ["evt_ok", "evt_bad"]
    assert [(f["kind"], f["error"]) for f in activity["failures"]] == [("stripe_event", "customer missing")]
    assert len(ok_json("dashboard", "payments", "--days", "31")["events"]) == 3
    assert "customer missing" in ok("dashboard", "payments").stdout


def test_term_preview_counts_lessons_and_amounts(studio):
    preview = ok_json("term-preview", "--semester", studio["semester"].id, "--payee", studio["family"].email)
    first, second = preview["enrollments"]
    dates = [lesson["date"] for lesson in first["lessons"]]
    # Mondays from 2026-10-26 (first lesson after "now") to 2026-12-14, minus the 2026-11-09 closure.
    assert dates == ["2026-10-26", "2026-11-02", "2026-11-16", "2026-11-23", "2026-11-30", "2026-12-07", "2026-12-14"]
    assert [lesson["date"] for lesson in first["lessons"] if lesson["dst_change"]] == ["2026-11-02"]
    assert first["amount_cents"] == 3 * 12000  # monthly: October, November, December
    assert second["lesson_count"] == 7 and second["amount_cents"] == 7 * 3500  # weekly: per lesson
    assert preview["families"] == [
        {
            "payee_id": studio["family"].id,
            "payee": "Garcia",
            "email": studio["family"].email,
            "lessons": 14,
            "amount_cents": 36000 + 24500,
            "discount_cents": 0,  # no sibling discount (SIBLING_DISCOUNT_PERCENT=0)
            "enrollment_ids": [first["id"], second["id"]],
        }
    ]
    assert "605.00 USD" in ok("term-preview", "--semester", studio["semester"].id).stdout
    refused("term-preview", "--semester", 999, message="no semester 999")


def test_export_writes_every_row(studio, tmp_path):
    out = tmp_path / "enrollments.csv"
    assert "exported 2 row(s)" in ok("export", "enrollment", "--out", out).stdout
    rows = list(csv.DictReader(out.open()))
    assert [int(row["id"]) for row in rows] == [e.id for e in studio["enrollments"]]
    assert rows[0]["status"] == "active" and rows[0]["start_date"] == "2026-10-26"
    ok("export", "audit_log", "--out", tmp_path / "audit.csv")
    audit = list(csv.DictReader((tmp_path / "audit.csv").open()))
    assert [row["action"] for row in audit] == ["enrollment.assign", "enrollment.assign"]
    assert json.loads(audit[0]["after"])["status"] == "active"  # JSON columns stay JSON
    refused("export", "nope", "--out", tmp_path / "x.csv", message="no table 'nope'")
    assert not (tmp_path / "x.csv").exists()
