"""A family calls off a lesson: `POST /parent/bookings/<id>/absences` under the make-up policy
(MAKEUP_NOTICE_HOURS, MAKEUP_CREDITS_PER_SEMESTER), and the admin's doors to the same rules
(`attendance mark`, `makeups grant`, `makeups policy`). Issue 13, items 2 and 3."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from models.attendance import Attendance, MakeUp
from models.audit import AuditLog
from models.booking import assign_enrollment
from models.config import reset_settings
from models.db import session_scope
from models.outbox import EmailLog
from tests import factories
from tests.support.api import assert_problem, bearer
from tests.support.cli import ok, ok_json, refused

NY = ZoneInfo("America/New_York")
BOOKED_AT = datetime(2026, 10, 20, 12, 0, tzinfo=NY)  # a Tuesday; the Monday lessons start 2026-11-02
FALL_LESSONS = [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16), date(2026, 11, 30), date(2026, 12, 7)]


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _audits(session, actor: str, action: str) -> int:
    return _count(session, AuditLog, AuditLog.actor == actor, AuditLog.action == action)


def _invites(session) -> list[EmailLog]:
    session.expire_all()
    return session.scalars(sa.select(EmailLog).where(EmailLog.template == "make_up_invite").order_by(EmailLog.id)).all()


def _assign(student_id: int, timeslot_id: int, start: date, *, offline: bool = True, plan=None) -> int:
    with session_scope() as unit:
        enrollment = assign_enrollment(
            unit,
            student_id=student_id,
            timeslot_id=timeslot_id,
            instrument="piano",
            plan=plan,
            offline=offline,
            start_date=start,
            actor="admin",
        )
        return enrollment.id


@pytest.fixture
def week(client, session, family_a):
    """Family A's Ada on Mondays 16:00 (offline, active) from 2026-11-02 in Fall 2026 (a closure
    on 2026-11-23, lessons to 2026-12-18); a Sunday and a Tuesday slot of the same teacher; Spring 2027."""
    teacher = factories.teacher(session, instruments=("piano",))
    monday = factories.timeslot(session, teacher_row=teacher, weekday=0, start="16:00")
    sunday = factories.timeslot(session, teacher_row=teacher, weekday=6, start="16:00")
    tuesday = factories.timeslot(session, teacher_row=teacher, weekday=1, start="16:00")
    fall = factories.semester(
        session,
        starts=date(2026, 9, 7),
        ends=date(2026, 12, 18),
        closures=[date(2026, 11, 23)],
        makeup_ends=date(2027, 1, 8),
        name="Fall 2026",
    )
    factories.semester(session, starts=date(2027, 1, 11), ends=date(2027, 5, 21), name="Spring 2027")
    plan = factories.plan(session)
    session.commit()
    student = family_a.add_student(client, "Ada")
    with time_machine.travel(BOOKED_AT, tick=False):
        enrollment = _assign(student, monday.id, date(2026, 11, 2))
    return {
        "student": student,
        "enrollment": enrollment,
        "url": f"/parent/bookings/{enrollment}/absences",
        "monday": monday,
        "sunday": sunday,
        "tuesday": tuesday,
        "fall": fall,
        "plan": plan,
    }


def _report(client, family, url: str, day: date, at: datetime, reason: str | None = "flu"):
    """POST the absence as the family at the instant `at` (a token minted then)."""
    with time_machine.travel(at, tick=False):
        body = {"date": day.isoformat()} | ({"reason": reason} if reason is not None else {})
        return client.post(url, json=body, headers=bearer(family.sub, family.email))


def _at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NY)


# The notice window -----------------------------------------------------------------------------


def test_exactly_the_notice_ahead_is_excused_with_a_credit_and_one_invite(client, session, family_a, week):
    # 2026-11-01 16:00 EST is 24 hours before Monday's 16:00 lesson (DST ended at 02:00 that day).
    response = _report(client, family_a, week["url"], date(2026, 11, 2), _at(date(2026, 11, 1), 16))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {"attendance_id", "status", "makeup_id", "credit_reason"}
    assert body["status"] == "excused" and body["makeup_id"] and body["credit_reason"] is None
    credit = session.get(MakeUp, body["makeup_id"])
    assert credit.student_id == week["student"] and credit.status == "available" and credit.expires_on == date(2027, 1, 8)
    row = session.get(Attendance, body["attendance_id"])
    assert (row.enrollment_id, row.lesson_date, row.status, row.note) == (week["enrollment"], date(2026, 11, 2), "excused", "flu")
    invites = _invites(session)
    assert [(email.recipient, email.context["makeup_id"]) for email in invites] == [(family_a.email, credit.id)]
    actor = f"payee:{family_a.payee_id}"
    assert _audits(session, actor, "attendance.mark") == 1 and _audits(session, actor, "makeup.grant") == 1


def test_a_second_less_than_the_notice_is_a_late_cancel_without_credit(client, session, family_a, week):
    response = _report(client, family_a, week["url"], date(2026, 11, 9), _at(date(2026, 11, 8), 16, 0, 1))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "late_cancel" and body["makeup_id"] is None
    assert "less than 24 hours" in body["credit_reason"]
    assert session.get(Attendance, body["attendance_id"]).status == "late_cancel"
    assert _count(session, MakeUp) == 0 and _invites(session) == []
    assert _audits(session, f"payee:{family_a.payee_id}", "attendance.mark") == 1


def test_the_notice_is_counted_in_real_hours_across_a_dst_change(client, session, family_a, week):
    # Sunday 2026-11-01 16:00 EST is 21:00 UTC. On Saturday 16:30 EDT (20:30 UTC) the wall clock
    # says 23.5 hours ahead, the real clock 24.5: excused. At 17:30 EDT (23.5 real hours): late.
    with time_machine.travel(BOOKED_AT, tick=False):
        sunday = _assign(week["student"], week["sunday"].id, date(2026, 10, 25))
    url = f"/parent/bookings/{sunday}/absences"
    early = _report(client, family_a, url, date(2026, 11, 1), _at(date(2026, 10, 31), 16, 30))
    assert early.status_code == 201 and early.get_json()["status"] == "excused", early.get_json()
    late = _report(client, family_a, url, date(2026, 11, 8), _at(date(2026, 11, 7), 16, 30))  # no DST change: 23.5 hours
    assert late.status_code == 201 and late.get_json()["status"] == "late_cancel", late.get_json()


def test_the_notice_follows_the_setting(client, session, family_a, week, monkeypatch):
    monkeypatch.setenv("MAKEUP_NOTICE_HOURS", "48")
    reset_settings()
    day = date(2026, 11, 16)  # no DST change in the two days before (NY wall-clock arithmetic is real hours here)
    assert _report(client, family_a, week["url"], day, _at(day, 16) - timedelta(hours=47)).get_json()["status"] == "late_cancel"
    day = date(2026, 11, 30)
    assert _report(client, family_a, week["url"], day, _at(day, 16) - timedelta(hours=48)).get_json()["status"] == "excused"


# The cap ----------------------------------------------------------------------------------------


def test_past_the_semester_cap_an_absence_is_excused_without_credit(client, session, family_a, week):
    answers = [_report(client, family_a, week["url"], day, BOOKED_AT) for day in FALL_LESSONS[:4]]
    assert [answer.status_code for answer in answers] == [201] * 4
    bodies = [answer.get_json() for answer in answers]
    assert [body["status"] for body in bodies] == ["excused"] * 4
    assert all(body["makeup_id"] for body in bodies[:3]) and all(body["credit_reason"] is None for body in bodies[:3])
    over = bodies[3]
    assert over["makeup_id"] is None
    assert over["credit_reason"] == "no make-up credit: Ada already has the 3 make-up credits for absences Fall 2026 allows"
    assert _count(session, MakeUp) == 3 and len(_invites(session)) == 3
    # Asked again, the same answer.
    again = _report(client, family_a, week["url"], FALL_LESSONS[3], BOOKED_AT + timedelta(days=1))
    assert again.status_code == 200 and again.get_json() == over
    # The admin's grant overrides the policy.
    granted = ok_json("makeups", "grant", "--student", week["student"], "--reason", "goodwill")
    assert granted["status"] == "available" and _count(session, MakeUp) == 4 and len(_invites(session)) == 4


def test_under_the_cap_teacher_cancellations_and_grants_do_not_count(client, session, family_a, week, monkeypatch):
    monkeypatch.setenv("MAKEUP_CREDITS_PER_SEMESTER", "1")
    reset_settings()
    enrollment = week["enrollment"]
    with time_machine.travel(BOOKED_AT, tick=False):
        cancelled = ok_json(
            "attendance", "mark", "--enrollment", enrollment, "--date", "2026-11-02", "--status", "teacher_cancelled"
        )
        ok("makeups", "grant", "--student", week["student"], "--reason", "snow day")
    assert cancelled["makeup_id"] and cancelled["credit_reason"] is None
    first = _report(client, family_a, week["url"], date(2026, 11, 9), BOOKED_AT).get_json()
    assert first["status"] == "excused" and first["makeup_id"], first
    second = _report(client, family_a, week["url"], date(2026, 11, 16), BOOKED_AT).get_json()
    assert second["makeup_id"] is None and "the 1 make-up credit for" in second["credit_reason"]
    # A new semester, a new allowance.
    new_term = datetime(2027, 1, 5, 12, 0, tzinfo=NY)
    with time_machine.travel(new_term, tick=False):
        spring = _assign(week["student"], week["tuesday"].id, date(2027, 1, 12))
    spring_answer = _report(client, family_a, f"/parent/bookings/{spring}/absences", date(2027, 1, 12), new_term)
    assert spring_answer.status_code == 201 and spring_answer.get_json()["makeup_id"], spring_answer.get_json()


def test_the_admins_excused_mark_meets_the_cap_and_late_cancel_earns_nothing(client, session, family_a, week, monkeypatch):
    monkeypatch.setenv("MAKEUP_CREDITS_PER_SEMESTER", "1")
    reset_settings()
    base = ("attendance", "mark", "--enrollment", week["enrollment"])
    with time_machine.travel(datetime(2026, 12, 15, 12, 0, tzinfo=NY), tick=False):
        first = ok_json(*base, "--date", "2026-11-02", "--status", "excused")
        over = ok_json(*base, "--date", "2026-11-09", "--status", "excused")
        text = ok(*base, "--date", "2026-11-16", "--status", "excused").stdout
        # Re-marking the credited lesson excused keeps its credit (it is the one the cap allows).
        assert ok_json(*base, "--date", "2026-11-02", "--status", "excused")["makeup_id"] == first["makeup_id"]
        late = ok_json(*base, "--date", "2026-11-02", "--status", "late_cancel")
        refused(*base, "--date", "2026-11-03", "--status", "late_cancel", message="is not a lesson")
    assert first["makeup_id"] and first["credit_reason"] is None
    assert over["status"] == "excused" and over["makeup_id"] is None and "the 1 make-up credit for" in over["credit_reason"]
    assert "no make-up credit" in text
    # late_cancel withdraws the unbooked credit and says why there is none.
    assert late["status"] == "late_cancel" and late["makeup_id"] is None and "late cancellation" in late["credit_reason"]
    assert _count(session, MakeUp) == 0 and len(_invites(session)) == 1


# Repeats and refusals ----------------------------------------------------------------------------


def test_the_same_report_again_is_the_same_answer_and_writes_nothing(client, session, family_a, week):
    day, at = date(2026, 11, 2), BOOKED_AT
    first = _report(client, family_a, week["url"], day, at)
    assert first.status_code == 201
    audits = _count(session, AuditLog)
    for when, reason in ((at, "flu"), (at + timedelta(days=10), "flu"), (_at(day, 17), "a cold")):  # later; after it started
        again = _report(client, family_a, week["url"], day, when, reason)
        assert again.status_code == 200 and again.get_json() == first.get_json()
    assert _count(session, Attendance) == 1 and _count(session, MakeUp) == 1 and len(_invites(session)) == 1
    assert _count(session, AuditLog) == audits
    assert session.get(Attendance, first.get_json()["attendance_id"]).note == "flu"  # the first report stands
    late = _report(client, family_a, week["url"], date(2026, 11, 9), _at(date(2026, 11, 9), 10))
    late_again = _report(client, family_a, week["url"], date(2026, 11, 9), _at(date(2026, 11, 9), 11))
    assert (late.status_code, late_again.status_code) == (201, 200) and late_again.get_json() == late.get_json()


@pytest.mark.parametrize("mark", ["present", "teacher_cancelled", "no_show"])
def test_another_mark_already_there_is_409_already_marked(client, session, family_a, week, mark):
    with time_machine.travel(BOOKED_AT, tick=False):
        ok("attendance", "mark", "--enrollment", week["enrollment"], "--date", "2026-11-09", "--status", mark)
    before = (_count(session, Attendance), _count(session, MakeUp), _count(session, AuditLog), _count(session, EmailLog))
    body = assert_problem(_report(client, family_a, week["url"], date(2026, 11, 9), BOOKED_AT), 409, "already-marked")
    assert mark in body["detail"] and body["field"] == "date"
    assert (_count(session, Attendance), _count(session, MakeUp), _count(session, AuditLog), _count(session, EmailLog)) == before


@pytest.mark.parametrize(
    "day, at, words",
    [
        (date(2026, 11, 3), BOOKED_AT, "is not a lesson"),  # a Tuesday
        (date(2026, 11, 23), BOOKED_AT, "is not a lesson"),  # the closure
        (date(2026, 10, 26), BOOKED_AT, "is not a lesson"),  # before the booking starts
        (date(2026, 12, 21), BOOKED_AT, "is not a lesson"),  # after the semester's last lesson
        (date(2026, 11, 2), _at(date(2026, 11, 2), 16), "already started"),
        (date(2026, 11, 2), _at(date(2026, 11, 5), 9), "already started"),
    ],
)
def test_a_date_that_is_no_lesson_to_call_off_is_422(client, session, family_a, week, day, at, words):
    body = assert_problem(_report(client, family_a, week["url"], day, at), 422, "invalid")
    assert words in body["detail"] and body["field"] == "date"
    assert _count(session, Attendance) == 0 and _count(session, EmailLog) == 0


def test_malformed_bodies_are_422(client, family_a, week):
    for body in (
        {},
        {"date": "2026-13-01"},
        {"date": "2026-11-02", "status": "excused"},
        {"date": "2026-11-02", "reason": "x" * 501},
    ):
        with time_machine.travel(BOOKED_AT, tick=False):
            assert_problem(client.post(week["url"], json=body, headers=bearer(family_a.sub, family_a.email)), 422)


def test_a_hold_has_no_lessons_to_call_off(client, session, family_a, week, task_queue):
    with time_machine.travel(BOOKED_AT, tick=False):
        hold = _assign(week["student"], week["tuesday"].id, date(2026, 11, 3), offline=False, plan=week["plan"].id)
    body = assert_problem(_report(client, family_a, f"/parent/bookings/{hold}/absences", date(2026, 11, 3), BOOKED_AT), 409)
    assert "provisional" in body["detail"] and _count(session, Attendance) == 0


def test_another_familys_booking_is_404(client, session, family_a, family_b, week):
    assert_problem(_report(client, family_b, week["url"], date(2026, 11, 2), BOOKED_AT), 404, "not-found")
    assert_problem(_report(client, family_a, "/parent/bookings/987654/absences", date(2026, 11, 2), BOOKED_AT), 404)
    assert _count(session, Attendance) == 0 and _count(session, EmailLog) == 0
    with time_machine.travel(BOOKED_AT, tick=False):
        assert_problem(client.post(week["url"], json={"date": "2026-11-02"}), 401)


# The policy -------------------------------------------------------------------------------------


def test_makeups_policy_prints_the_settings(monkeypatch):
    assert ok_json("makeups", "policy") == {"notice_hours": 24, "credits_per_semester": 3}
    monkeypatch.setenv("MAKEUP_NOTICE_HOURS", "48")
    monkeypatch.setenv("MAKEUP_CREDITS_PER_SEMESTER", "5")
    reset_settings()
    assert ok_json("makeups", "policy") == {"notice_hours": 48, "credits_per_semester": 5}
    text = ok("makeups", "policy").stdout
    assert "48 hours" in text and "MAKEUP_NOTICE_HOURS" in text and "MAKEUP_CREDITS_PER_SEMESTER" in text


# Races -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reports_at_once_take_the_last_credit_once_and_repeat_one_mark(committed_db, engine_name, monkeypatch):
    """Real commits over HTTP: six threads report six lessons with one credit left, and six more
    repeat the first of them; one credit, one invite, each lesson marked once."""
    import threading

    from werkzeug.serving import make_server

    from models.clock import studio_today
    from tests.support.api import make_app
    from tests.test_api_race import _post

    monkeypatch.setenv("MAKEUP_CREDITS_PER_SEMESTER", "1")
    today = studio_today()
    with session_scope() as unit:
        teacher = factories.teacher(unit, instruments=("piano",))
        slot = factories.timeslot(unit, teacher_row=teacher, weekday=today.weekday(), start="16:00")
        factories.semester(unit, starts=today - timedelta(days=30), ends=today + timedelta(days=120), name="This term")
        payee = factories.payee(unit, email="racer@family.test", supabase_user_id="racer")
        student = factories.student(unit, payee_row=payee, name="Ada")
        student_id, slot_id = student.id, slot.id
    first = today + timedelta(days=7)
    enrollment = _assign(student_id, slot_id, first)
    lessons = [first + timedelta(days=7 * n) for n in range(6)]
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/parent/bookings/{enrollment}/absences"
    headers = bearer("racer", "racer@family.test")
    days = lessons + [lessons[0]] * 6
    barrier = threading.Barrier(len(days))
    results: list[tuple[date, int, dict]] = []

    def report(day: date) -> None:
        barrier.wait()
        status, body = _post(url, {"date": day.isoformat()}, headers)
        results.append((day, status, body))

    threads = [threading.Thread(target=report, args=(day,)) for day in days]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(status for _, status, _ in results) == [200] * 6 + [201] * 6, results
    same = [body for day, _, body in results if day == lessons[0]]
    assert all(body == same[0] for body in same)
    assert [body["status"] for _, _, body in results] == ["excused"] * 12
    assert len({body["makeup_id"] for _, _, body in results if body["makeup_id"]}) == 1
    with session_scope(write=False) as unit:
        assert unit.scalar(sa.select(sa.func.count()).select_from(MakeUp)) == 1
        assert unit.scalar(sa.select(sa.func.count()).select_from(Attendance)) == 6
        invites = sa.select(sa.func.count()).select_from(EmailLog).where(EmailLog.template == "make_up_invite")
        assert unit.scalar(invites) == 1
