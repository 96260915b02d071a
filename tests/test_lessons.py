"""A family's lessons (`GET /parent/lessons`, `studioctl payees lessons`; issue 13, item 1): every
weekly lesson of its live bookings within their dates and every booked make-up, placed in the
studio's zone across a DST change, closures left out, attendance once marked. Both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from models.attendance import MakeUp, mark_attendance
from models.db import session_scope
from models.enrollment import Enrollment
from models.lessons import family_lessons, lesson_range
from models.people import Payee
from tests import factories
from tests.support.api import assert_problem, bearer
from tests.support.cli import ok_json, refused

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=NY)  # a Tuesday; DST ends on Sunday, November 1
CLOSED = date(2026, 11, 9)  # a Monday


def _enrollment(session, student, slot, *, start: date, end: date | None = None, status: str = "active", semester=None):
    row = Enrollment(
        student_id=student.id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status=status,
        offline=True,
        start_date=start,
        end_date=end,
        semester_id=semester.id if semester else None,
        provisional_expires_at=datetime.now(UTC) + timedelta(minutes=30) if status == "provisional" else None,
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def week(session, family_a, family_b):
    """Family A: Ada's Monday 16:00 lessons (the semester's, a closure on Nov 9, attendance
    marked on Oct 26) and a Wednesday make-up after the DST change; Ben's Thursday hold, his
    paused Friday booking, and a Tuesday booking that ended on Oct 31. Family B: a lesson too."""
    semester = factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), closures=[CLOSED])
    teacher = factories.teacher(session, name="Clara", instruments=("piano",))
    monday, tuesday, wednesday, thursday, friday = (
        factories.timeslot(session, teacher_row=teacher, weekday=day, start="16:00") for day in range(5)
    )
    a = session.get(Payee, family_a.payee_id)
    ada, ben = factories.student(session, payee_row=a, name="Ada"), factories.student(session, payee_row=a, name="Ben")
    weekly = _enrollment(session, ada, monday, start=date(2026, 9, 7), semester=semester)
    ended = _enrollment(session, ben, tuesday, start=date(2026, 9, 8), end=date(2026, 10, 31))
    hold = _enrollment(session, ben, thursday, start=date(2026, 10, 22), status="provisional")
    _enrollment(session, ben, friday, start=date(2026, 9, 11), status="paused")
    _enrollment(
        session,
        ben,
        factories.timeslot(session, teacher_row=teacher, weekday=5),
        start=date(2026, 9, 12),
        status="cancelled",
        end=date(2026, 10, 3),
    )
    other = factories.student(session, payee_row=session.get(Payee, family_b.payee_id), name="Zoe")
    _enrollment(
        session, other, factories.timeslot(session, teacher_row=teacher, weekday=0, start="17:00"), start=date(2026, 9, 7)
    )
    makeup = MakeUp(
        student_id=ada.id,
        instrument_id=factories.instrument(session).id,
        status="booked",
        timeslot_id=wednesday.id,
        lesson_date=date(2026, 11, 4),
        expires_on=date(2026, 12, 19),
    )
    session.add(makeup)
    session.commit()
    with session_scope() as unit:
        marked, _ = mark_attendance(
            unit, enrollment_id=weekly.id, lesson_date=date(2026, 10, 26), status="present", actor="admin"
        )
        attendance_id = marked.id
    return {"weekly": weekly.id, "ended": ended.id, "hold": hold.id, "makeup": makeup.id, "attendance": attendance_id}


def _starts(items, **match):
    return [item["starts_at"] for item in items if all(item[key] == value for key, value in match.items())]


def test_a_familys_lessons_across_a_dst_change_and_a_closure(client, family_a, week):
    with time_machine.travel(NOW, tick=False):
        answer = client.get("/parent/lessons?from=2026-10-19&to=2026-11-22", headers=family_a.headers)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["from"], body["to"]) == ("2026-10-19", "2026-11-22")
    items = body["items"]
    # Monday 16:00 stays 16:00 on the wall clock: -04:00 before November 1, -05:00 after; no Nov 9.
    assert _starts(items, enrollment_id=week["weekly"]) == [
        "2026-10-19T16:00:00-04:00",
        "2026-10-26T16:00:00-04:00",
        "2026-11-02T16:00:00-05:00",
        "2026-11-16T16:00:00-05:00",
    ]
    assert _starts(items, enrollment_id=week["ended"]) == ["2026-10-20T16:00:00-04:00", "2026-10-27T16:00:00-04:00"]
    assert _starts(items, enrollment_id=week["hold"]) == [
        f"2026-{day}T16:00:00{offset}"
        for day, offset in (
            ("10-22", "-04:00"),
            ("10-29", "-04:00"),
            ("11-05", "-05:00"),
            ("11-12", "-05:00"),
            ("11-19", "-05:00"),
        )
    ]
    assert {item["tentative"] for item in items if item["enrollment_id"] == week["hold"]} == {True}
    makeups = [item for item in items if item["kind"] == "makeup"]
    assert makeups == [
        {
            "date": "2026-11-04",
            "starts_at": "2026-11-04T16:00:00-05:00",
            "kind": "makeup",
            "student_id": makeups[0]["student_id"],
            "student": "Ada",
            "teacher": "Clara",
            "substitute": None,
            "instrument": "piano",
            "timeslot_id": makeups[0]["timeslot_id"],
            "enrollment_id": None,
            "makeup_id": week["makeup"],
            "attendance": None,
            "tentative": False,
            "location": None,
            "room": None,
        }
    ]
    marked = next(item for item in items if item["date"] == "2026-10-26")
    assert marked["attendance"] == {"id": week["attendance"], "status": "present"} and marked["kind"] == "lesson"
    assert {item["student"] for item in items} == {"Ada", "Ben"}  # not the other family's Zoe; no paused or cancelled one
    assert "2026-11-09" not in {item["date"] for item in items}
    assert _by_instant(items)
    assert len(items) == 4 + 2 + 5 + 1


def _by_instant(items) -> bool:
    instants = [datetime.fromisoformat(item["starts_at"]) for item in items]
    return instants == sorted(instants)


def test_the_default_range_is_the_next_eight_weeks(client, family_a, week):
    with time_machine.travel(NOW, tick=False):
        body = client.get("/parent/lessons", headers=family_a.headers).get_json()
    assert (body["from"], body["to"]) == ("2026-10-20", "2026-12-14")  # 56 days, today included
    assert _starts(body["items"], enrollment_id=week["weekly"])[0] == "2026-10-26T16:00:00-04:00"  # yesterday's is past the range
    assert _starts(body["items"], enrollment_id=week["weekly"])[-1] == "2026-12-14T16:00:00-05:00"
    assert _by_instant(body["items"])


@pytest.mark.parametrize(
    "query, type_, field",
    [
        ("?from=2026-10-19&to=2027-04-19", "invalid", "to"),  # 26 weeks and a day
        ("?from=2026-10-19&to=2026-10-18", "invalid", "to"),  # reversed
        ("?to=2026-10-01", "invalid", "to"),  # before today, the default `from`
        ("?from=12345", "validation-error", None),  # not written YYYY-MM-DD
        ("?from=2026-02-30", "validation-error", None),
        ("?from=9999-12-30", "invalid", "from"),  # its weeks would run past the last date there is
        ("?from=9999-10-01&to=9999-12-31", "invalid", "to"),
    ],
)
def test_a_range_past_26_weeks_or_reversed_is_422(client, family_a, query, type_, field):
    with time_machine.travel(NOW, tick=False):
        body = assert_problem(client.get(f"/parent/lessons{query}", headers=family_a.headers), 422, type_)
    if field:
        assert body["field"] == field


def test_26_weeks_is_the_longest_range(client, family_a, week):
    with time_machine.travel(NOW, tick=False):
        answer = client.get("/parent/lessons?from=2026-10-19&to=2027-04-18", headers=family_a.headers)
    assert answer.status_code == 200, answer.get_json()


def test_lessons_need_a_registered_family_and_show_only_its_own(client, family_b, week):
    assert_problem(client.get("/parent/lessons"), 401)
    assert_problem(client.get("/parent/lessons", headers=bearer("user-new", "new@family.test")), 403, "payee-required")
    with time_machine.travel(NOW, tick=False):
        items = client.get("/parent/lessons?from=2026-10-19&to=2026-11-22", headers=family_b.headers).get_json()["items"]
    assert {item["student"] for item in items} == {"Zoe"} and len(items) == 4


def test_the_read_model_asks_five_queries_whatever_the_range(session, db, family_a, week):
    seen: list[str] = []

    def record(conn, cursor, statement, *rest):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    sa.event.listen(db, "before_cursor_execute", record)
    try:
        for last in (date(2026, 10, 25), date(2027, 4, 18)):
            seen.clear()
            lessons = family_lessons(session, family_a.payee_id, first=date(2026, 10, 19), last=last, tz=NY)
            assert lessons and len(seen) == 5, seen  # closures, substitutes, lessons, marks, make-ups
    finally:
        sa.event.remove(db, "before_cursor_execute", record)


def test_lesson_range_rules():
    today = date(2026, 10, 20)
    assert lesson_range(today) == (today, date(2026, 12, 14))
    assert lesson_range(today, date(2026, 11, 1)) == (date(2026, 11, 1), date(2026, 12, 26))
    assert lesson_range(today, None, date(2026, 10, 20)) == (today, today)


def test_the_cli_twin_lists_the_same_lessons(client, family_a, week):
    with time_machine.travel(NOW, tick=False):
        api = client.get("/parent/lessons?from=2026-10-19&to=2026-11-22", headers=family_a.headers).get_json()
        cli = ok_json("payees", "lessons", family_a.email, "--from", "2026-10-19", "--to", "2026-11-22")
        refused("payees", "lessons", family_a.email, "--from", "2026-10-19", "--to", "2027-06-01", message="at most 26 weeks")
    assert cli["payee_id"] == family_a.payee_id and (cli["from"], cli["to"]) == (api["from"], api["to"])
    assert [
        (item["date"], item["starts_at"], item["kind"], item["enrollment_id"], item["makeup_id"], item["attendance"])
        for item in cli["items"]
    ] == [
        (
            item["date"],
            item["starts_at"],
            item["kind"],
            item["enrollment_id"],
            item["makeup_id"],
            item["attendance"]["status"] if item["attendance"] else None,
        )
        for item in api["items"]
    ]
