"""`studioctl enrollments | attendance | makeups` on both engines: the booking doors, the
attendance rules and the make-up credit they earn."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import select

from models.attendance import MakeUp
from models.outbox import EmailLog
from tests import factories
from tests.support.cli import audit_actions, ok, ok_json, refused, row_counts

NOW = datetime(2026, 10, 20, 14, 0, tzinfo=UTC)  # Tuesday 10:00 in New York


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def studio(db, session):
    teacher = factories.teacher(session, instruments=("piano",))
    factories.instrument(session, "drums")
    slots = [factories.timeslot(session, teacher_row=teacher, weekday=0, start=start) for start in ("16:00", "16:30", "17:00")]
    fall = factories.semester(
        session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), makeup_ends=date(2027, 1, 16), closures=(date(2026, 11, 9),)
    )
    student = factories.student(session)
    plan = factories.plan(session, frequency="monthly")
    return {"teacher": teacher, "slots": slots, "semester": fall, "student": student, "plan": plan}


def _assign(studio, slot_index=0, *extra):
    return ok_json(
        "enrollments",
        "assign",
        "--student",
        studio["student"].id,
        "--timeslot",
        studio["slots"][slot_index].id,
        "--instrument",
        "piano",
        *extra,
    )


def test_assign_provisional_enqueues_booking_after_commit(studio, session, task_queue):
    view = _assign(studio, 0, "--plan", "monthly")
    assert view["status"] == "provisional" and view["plan"] == "monthly" and view["slot"] == "Mon 16:00"
    assert view["start_date"] == "2026-10-26" and view["provisional_expires_at"].startswith("2026-10-20T14:30")
    assert task_queue.pending() == [("book_enrollment", (view["id"],))]
    assert ok_json("enrollments", "show", view["id"]) == view
    assert audit_actions(session) == [("admin", "enrollment.hold")]


def test_assign_offline_is_active_and_enqueues_nothing(studio, task_queue):
    view = _assign(studio, 1, "--offline", "--start", "2026-11-02")
    assert view["status"] == "active" and view["offline"] is True and view["start_date"] == "2026-11-02"
    assert task_queue.names() == []
    assert [row["id"] for row in ok_json("enrollments", "list", "--status", "active")] == [view["id"]]
    assert [row["id"] for row in ok_json("enrollments", "list", "--teacher", studio["teacher"].email)] == [view["id"]]
    assert ok_json("enrollments", "list", "--student", "999999") == []


def test_an_offline_assignment_may_start_in_the_past_and_its_past_lessons_take_attendance(studio, session, task_queue):
    """A studio entering its roster mid-term (issue 13, item 7): the lessons since September
    are this enrollment's, so attendance is recorded for them; a paid booking still starts ahead."""
    view = _assign(studio, 0, "--offline", "--start", "2026-09-14")
    assert view["status"] == "active" and view["start_date"] == "2026-09-14" and task_queue.names() == []
    base = ("attendance", "mark", "--enrollment", view["id"])
    assert ok_json(*base, "--date", "2026-09-14", "--status", "present")["status"] == "present"
    assert ok_json(*base, "--date", "2026-10-19", "--status", "excused")["makeup_id"] is not None  # yesterday
    refused(*base, "--date", "2026-09-07", "--status", "present", message="is not a lesson")  # before its start
    # The slot is held from that past date on: a second roster entry on it is refused.
    refused(
        "enrollments",
        "assign",
        "--student",
        factories.student(session).id,
        "--timeslot",
        studio["slots"][0].id,
        "--instrument",
        "piano",
        "--offline",
        "--start",
        "2026-09-07",
        message="is taken",
    )
    assert [action for _, action in audit_actions(session)][:2] == ["enrollment.assign", "attendance.mark"]


def test_assign_refusals_change_nothing(studio, session, task_queue):
    taken = _assign(studio, 0, "--offline")
    before = row_counts(session)
    slot = studio["slots"][0].id
    args = ("enrollments", "assign", "--student", studio["student"].id, "--instrument", "piano")
    refused(*args, "--timeslot", slot, "--offline", message=f"timeslot {slot} (Mon 16:00) is taken")
    refused(*args, "--timeslot", 424242, "--offline", message="no timeslot 424242")
    refused(
        "enrollments",
        "assign",
        "--student",
        studio["student"].id,
        "--timeslot",
        studio["slots"][1].id,
        "--instrument",
        "drums",
        "--offline",
        message="does not teach drums",
    )
    refused(*args, "--timeslot", studio["slots"][1].id, message="a plan is needed")
    refused(*args, "--timeslot", studio["slots"][1].id, "--offline", "--start", "2026-11-03", message="is not a Mon")
    # Only an offline assignment may start in the past (a roster entered mid-term); a paid one may not.
    refused(*args, "--timeslot", studio["slots"][1].id, "--plan", "monthly", "--start", "2026-10-19", message="in the past")
    refused(*args, "--timeslot", studio["slots"][1].id, "--offline", "--start", "2024-10-14", message="in the past")
    refused("enrollments", "list", "--status", "pending", message="status must be one of")
    assert row_counts(session) == before
    assert task_queue.names() == []
    cancelled = ok_json("enrollments", "cancel", taken["id"], "--reason", "moved away")
    assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "moved away"
    assert task_queue.names() == []  # offline: nothing to cancel in Stripe
    refused("enrollments", "cancel", taken["id"], message="not live")


def test_cancel_provisional_enqueues_subscription_cancel(studio, session, task_queue):
    view = _assign(studio, 2, "--plan", "monthly")
    task_queue.clear()
    ok("enrollments", "cancel", view["id"])
    assert task_queue.pending() == [("cancel_subscription", (view["id"],))]
    assert [action for _, action in audit_actions(session)] == ["enrollment.hold", "enrollment.cancel"]
    again = _assign(studio, 2, "--offline")  # the slot is free again
    assert again["status"] == "active"


def _emails(session, template):
    session.expire_all()
    return session.exec(select(EmailLog).where(EmailLog.template == template)).all()


def test_attendance_marks_and_remarks_keep_makeup_credit_consistent(studio, session):
    enrollment = _assign(studio, 0, "--offline", "--start", "2026-10-26")
    base = ("attendance", "mark", "--enrollment", enrollment["id"], "--date", "2026-10-26")
    excused = ok_json(*base, "--status", "excused", "--note", "flu")
    credit = session.get(MakeUp, excused["makeup_id"])
    assert credit.status == "available" and credit.expires_on == date(2027, 1, 16)
    assert len(_emails(session, "make_up_invite")) == 1
    # Re-marking with another credit-earning status keeps the one credit.
    assert ok_json(*base, "--status", "teacher_cancelled")["makeup_id"] == credit.id
    assert session.exec(select(MakeUp)).all() == [credit]
    # no_show earns nothing: the unused credit is withdrawn and the family is told.
    no_show = ok_json(*base, "--status", "no_show")
    assert no_show["makeup_id"] is None and session.exec(select(MakeUp)).all() == []
    assert len(_emails(session, "no_show_notice")) == 1
    assert [row["status"] for row in ok_json("attendance", "list", "--enrollment", enrollment["id"])] == ["no_show"]
    assert [action for _, action in audit_actions(session)] == [
        "enrollment.assign",
        "attendance.mark",
        "makeup.grant",
        "attendance.mark",
        "attendance.mark",
        "makeup.revoke",
    ]


def test_attendance_refusals(studio, session):
    enrollment = _assign(studio, 0, "--offline", "--start", "2026-10-26")
    booked_credit = ok_json("attendance", "mark", "--enrollment", enrollment["id"], "--date", "2026-10-26", "--status", "excused")
    ok("makeups", "book", booked_credit["makeup_id"], "--timeslot", studio["slots"][1].id, "--date", "2026-11-02")
    before = row_counts(session)
    base = ("attendance", "mark", "--enrollment", enrollment["id"])
    refused(*base, "--date", "2026-10-27", "--status", "present", message="is not a lesson")
    refused(*base, "--date", "2026-11-09", "--status", "present", message="is not a lesson")  # closure
    refused(*base, "--date", "2026-10-19", "--status", "present", message="is not a lesson")  # before the start
    refused(*base, "--date", "2026-11-02", "--status", "late", message="status must be one of")
    refused("attendance", "mark", "--enrollment", 99999, "--date", "2026-11-02", "--status", "present", message="no enrollment")
    # The credit is booked: re-marking to present would strand it.
    refused(*base, "--date", "2026-10-26", "--status", "present", message="cancel it first")
    assert row_counts(session) == before


def test_makeups_grant_book_cancel(studio, session):
    _assign(studio, 0, "--offline", "--start", "2026-10-26")
    other = factories.student(session)
    granted = ok_json("makeups", "grant", "--student", studio["student"].id, "--reason", "teacher ran late")
    assert granted["status"] == "available" and granted["instrument"] == "piano" and granted["expires_on"] == "2027-01-16"
    rival = ok_json("makeups", "grant", "--student", other.id, "--reason", "snow day", "--instrument", "piano")
    before = row_counts(session)
    free_slot = studio["slots"][1].id
    # Not free: the enrollment's own lesson, a closure, wrong weekday, outside the window.
    refused("makeups", "book", granted["id"], "--timeslot", studio["slots"][0].id, "--date", "2026-11-02", message="is taken")
    refused("makeups", "book", granted["id"], "--timeslot", free_slot, "--date", "2026-11-09", message="closed")
    refused("makeups", "book", granted["id"], "--timeslot", free_slot, "--date", "2026-11-03", message="is not a Mon")
    refused("makeups", "book", granted["id"], "--timeslot", free_slot, "--date", "2027-02-01", message="outside")
    assert row_counts(session) == before
    booked = ok_json("makeups", "book", granted["id"], "--timeslot", free_slot, "--date", "2026-11-02")
    assert booked["status"] == "booked" and booked["slot"] == "Mon 16:30" and booked["lesson_date"] == "2026-11-02"
    assert len(_emails(session, "make_up_confirmation")) == 1
    refused("makeups", "book", rival["id"], "--timeslot", free_slot, "--date", "2026-11-02", message="is taken")
    assert [row["id"] for row in ok_json("makeups", "list", "--status", "booked")] == [granted["id"]]
    assert {row["id"] for row in ok_json("makeups", "list", "--student", other.id)} == {rival["id"]}
    assert ok_json("makeups", "cancel", granted["id"])["status"] == "available"
    refused("makeups", "cancel", granted["id"], message="not booked")
    assert ok_json("makeups", "list", "--expiring-within", "30") == []
    with time_machine.travel(datetime(2027, 1, 1, 15, tzinfo=UTC), tick=False):
        assert {row["id"] for row in ok_json("makeups", "list", "--expiring-within", "30")} == {granted["id"], rival["id"]}
    assert [action for _, action in audit_actions(session)] == [
        "enrollment.assign",
        "makeup.grant",
        "makeup.grant",
        "makeup.book",
        "makeup.cancel",
    ]
