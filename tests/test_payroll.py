"""Payroll (issue 15, item 3): `studioctl payroll`, `GET /admin/payroll`, `teachers set-rate`.

One month (November 2026) of two teachers computed exactly: present, no_show, late_cancel,
excused, teacher_cancelled, a substituted lesson (a TimeOff row and the mark's `taught_by_id`,
written through the ORM: the time-off operations are built in parallel), make-ups (used, and
booked with the date past, one of them taught by a substitute), a closure and unmarked lessons.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from models.attendance import BOOKED, USED, Attendance, MakeUp, mark_attendance
from models.audit import AuditLog
from models.booking import assign_enrollment
from models.config import reset_settings
from models.db import session_scope
from models.enrollment import Enrollment
from models.payroll import payroll
from models.people import Teacher
from models.time_off import TimeOff
from tests import factories
from tests.support.api import assert_problem, bearer
from tests.support.cli import invoke, ok, ok_json, refused, row_counts
from tests.test_admin_api import ADMIN
from tests.test_dashboard_queries import count_queries

NOV_1, NOV_30 = date(2026, 11, 1), date(2026, 11, 30)
RANGE = ("--from", "2026-11-01", "--to", "2026-11-30")
BOOKED_AT = datetime(2026, 9, 1, tzinfo=UTC)
MARKS = {  # enrollment key → {date: status}
    "ada_mon": {2: "present", 9: "no_show", 16: "late_cancel", 23: "excused"},  # 30: unmarked (Bea stands in)
    "ada_tue": {3: "teacher_cancelled", 10: "present", 17: "present"},  # 10: taught by Bea; 24: closure
    "bea_mon": {2: "present", 9: "present", 16: "present", 23: "no_show"},  # 30: unmarked, Ada stands in
}


def _enroll(slot_id: int, student_id: int) -> int:
    with session_scope() as unit:
        enrollment = assign_enrollment(
            unit,
            student_id=student_id,
            timeslot_id=slot_id,
            instrument="piano",
            plan=None,
            offline=True,
            actor="admin",
            now=BOOKED_AT,
        )
        return enrollment.id


def _mark(enrollment_id: int, day: int, status: str) -> int:
    with session_scope() as unit:
        row, _ = mark_attendance(unit, enrollment_id=enrollment_id, lesson_date=date(2026, 11, day), status=status, actor="admin")
        return row.id


@pytest.fixture
def month(session):
    """Ada (25.00 a lesson) and Bea (30.00): Ada's Monday and Tuesday slots, Ada's free
    Wednesday slot (make-ups), Bea's Monday slot; Tuesday 24 November closed."""
    factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), closures=[date(2026, 11, 24)])
    ada = factories.teacher(session, name="Ada Lovelace")
    bea = factories.teacher(session, name="Bea Brown")
    ada.rate_cents, bea.rate_cents = 2500, 3000
    slots = {
        "ada_mon": factories.timeslot(session, teacher_row=ada, weekday=0, start="16:00"),
        "ada_tue": factories.timeslot(session, teacher_row=ada, weekday=1, start="16:00"),
        "bea_mon": factories.timeslot(session, teacher_row=bea, weekday=0, start="17:00"),
    }
    ada_wed = factories.timeslot(session, teacher_row=ada, weekday=2, start="16:00")
    students = {key: factories.student(session) for key in slots}
    session.commit()
    enrollments = {key: _enroll(slots[key].id, students[key].id) for key in slots}
    marks = {key: {day: _mark(enrollments[key], day, status) for day, status in MARKS[key].items()} for key in MARKS}
    # Ada is away on 10 and 18 November (Bea teaches), Bea on 30 November (Ada teaches).
    session.add(TimeOff(teacher_id=ada.id, starts_on=date(2026, 11, 10), ends_on=date(2026, 11, 10), substitute_id=bea.id))
    session.add(TimeOff(teacher_id=ada.id, starts_on=date(2026, 11, 18), ends_on=date(2026, 11, 18), substitute_id=bea.id))
    session.add(TimeOff(teacher_id=bea.id, starts_on=date(2026, 11, 30), ends_on=date(2026, 11, 30), substitute_id=ada.id))
    substituted = session.get(Attendance, marks["ada_tue"][10])
    substituted.taught_by_id = bea.id
    session.add(substituted)
    # Make-ups on Ada's Wednesday slot: one used (Ada taught it), one still `booked` with its
    # date past (the daily job has not run) that Bea taught; one expired and one available, never paid.
    student = students["ada_mon"].id
    makeups = {
        "used": MakeUp(
            student_id=student, status=USED, timeslot_id=ada_wed.id, lesson_date=date(2026, 11, 25), expires_on=NOV_30
        ),
        "booked": MakeUp(
            student_id=student,
            status=BOOKED,
            timeslot_id=ada_wed.id,
            lesson_date=date(2026, 11, 18),
            taught_by_id=bea.id,
            expires_on=NOV_30,
        ),
        "expired": MakeUp(student_id=student, status="expired", expires_on=NOV_30),
    }
    session.add_all(makeups.values())
    session.commit()
    return {"ada": ada, "bea": bea, "enrollments": enrollments, "marks": marks, "makeups": makeups, "slots": slots}


def _teacher(report: dict, teacher: Teacher) -> dict:
    return next(row for row in report["teachers"] if row["email"] == teacher.email)


def _ids(row: dict) -> tuple[set[int], set[int]]:
    return (
        {lesson["attendance_id"] for lesson in row["lessons"] if lesson["attendance_id"]},
        {lesson["makeup_id"] for lesson in row["lessons"] if lesson["makeup_id"]},
    )


def test_a_month_is_paid_exactly_per_teacher_and_substitute(month):
    report = ok_json("payroll", *RANGE)
    assert (report["from"], report["to"]) == ("2026-11-01", "2026-11-30")
    ada, bea = _teacher(report, month["ada"]), _teacher(report, month["bea"])
    marks, makeups = month["marks"], month["makeups"]
    # Ada: Monday present, no_show, late_cancel; Tuesday 17 present; the used make-up. Not her
    # excused Monday, her teacher_cancelled Tuesday, nor Tuesday 10 (Bea taught it).
    assert (ada["name"], ada["lessons_paid"], ada["amount_cents"]) == ("Ada Lovelace", 5, 5 * 2500)
    assert _ids(ada) == (
        {marks["ada_mon"][2], marks["ada_mon"][9], marks["ada_mon"][16], marks["ada_tue"][17]},
        {makeups["used"].id},
    )
    assert ada["by_status"] == {"late_cancel": 1, "makeup": 1, "no_show": 1, "present": 2}
    # Bea: her four Mondays (present x3, no_show), Ada's Tuesday 10, the make-up she taught on the 18th.
    assert (bea["lessons_paid"], bea["amount_cents"]) == (6, 6 * 3000)
    assert _ids(bea) == ({*marks["bea_mon"].values(), marks["ada_tue"][10]}, {makeups["booked"].id})
    substitute_lessons = [lesson for lesson in bea["lessons"] if lesson["substitute_for_id"] is not None]
    assert {(lesson["date"], lesson["substitute_for_id"]) for lesson in substitute_lessons} == {
        ("2026-11-10", month["ada"].id),
        ("2026-11-18", month["ada"].id),
    }
    assert all(lesson["amount_cents"] == 3000 for lesson in bea["lessons"])
    assert {lesson["substitute_for"] for lesson in substitute_lessons} == {month["ada"].email}
    # Unmarked: the two Mondays of the 30th, both Ada's to teach (she stands in for Bea); not paid.
    assert [(entry["date"], entry["enrollment_id"], entry["substitute_for_id"]) for entry in ada["unmarked"]] == [
        ("2026-11-30", month["enrollments"]["ada_mon"], None),
        ("2026-11-30", month["enrollments"]["bea_mon"], month["bea"].id),
    ]
    assert ada["unmarked"][1]["substitute_for"] == month["bea"].email
    assert bea["unmarked"] == []
    assert report["total_cents"] == 5 * 2500 + 6 * 3000


def test_late_cancel_is_not_paid_when_the_setting_says_so(month, monkeypatch):
    monkeypatch.setenv("PAY_LATE_CANCEL", "false")
    reset_settings()
    report = ok_json("payroll", *RANGE)
    ada = _teacher(report, month["ada"])
    assert (ada["lessons_paid"], ada["amount_cents"]) == (4, 4 * 2500)
    assert month["marks"]["ada_mon"][16] not in _ids(ada)[0]
    assert _teacher(report, month["bea"])["amount_cents"] == 6 * 3000
    assert "late_cancel" not in report["paid_statuses"]


def test_a_late_cancelled_lesson_whose_date_a_make_up_took_is_paid_once(month, session):
    # Another family's make-up on Ada's Monday 16 November, the half hour Ada's student called off late.
    other = factories.student(session)
    session.add(
        MakeUp(
            student_id=other.id,
            status=USED,
            timeslot_id=month["slots"]["ada_mon"].id,
            lesson_date=date(2026, 11, 16),
            expires_on=NOV_30,
        )
    )
    session.commit()
    ada = _teacher(ok_json("payroll", *RANGE), month["ada"])
    # Still 5 paid: the make-up instead of the late cancel (no second pay for one half hour).
    assert (ada["lessons_paid"], ada["amount_cents"]) == (5, 5 * 2500)
    assert month["marks"]["ada_mon"][16] not in _ids(ada)[0]
    assert ada["by_status"] == {"makeup": 2, "no_show": 1, "present": 2}


def test_unmarked_lessons_are_looked_for_up_to_today_and_paid_once_marked(month, session):
    # On 18 November: the make-up booked that day is unmarked (paid once the day is over), the
    # Mondays of the 23rd and 30th are not lessons yet (nothing unmarked, nothing paid).
    early = payroll(session, first=NOV_1, last=NOV_30, today=date(2026, 11, 18))
    assert early["unmarked_until"] == "2026-11-18"
    bea = _teacher(early, month["bea"])
    assert [(entry["kind"], entry["makeup_id"]) for entry in bea["unmarked"]] == [("makeup", month["makeups"]["booked"].id)]
    assert bea["lessons_paid"] == 5
    assert _teacher(early, month["ada"])["unmarked"] == []
    # Marking the unmarked lesson pays it, to the substitute recorded on the mark.
    row_id = _mark(month["enrollments"]["bea_mon"], 30, "present")
    with session_scope() as unit:
        row = unit.get(Attendance, row_id)
        row.taught_by_id = month["ada"].id
        unit.add(row)
    session.expire_all()
    report = payroll(session, first=NOV_1, last=NOV_30, today=date(2026, 12, 1))
    ada = _teacher(report, month["ada"])
    assert (ada["lessons_paid"], len(ada["unmarked"])) == (6, 1)
    assert row_id in _ids(ada)[0]


def test_one_teacher_and_the_detail_list_every_paid_lesson_by_id(month):
    only = ok_json("payroll", *RANGE, "--teacher", month["bea"].email)
    assert [row["email"] for row in only["teachers"]] == [month["bea"].email]
    assert (only["teachers"][0]["lessons_paid"], only["teachers"][0]["amount_cents"]) == (6, 18000)
    # Bea stood in for Ada on the 10th and the 18th: those are hers; Ada's unmarked 30th is not.
    assert only["teachers"][0]["unmarked"] == []
    text = ok("payroll", *RANGE, "--teacher", month["ada"].email, "--detail").stdout
    for attendance_id in _ids(_teacher(ok_json("payroll", *RANGE), month["ada"]))[0]:
        assert f" {attendance_id} " in text
    assert "125.00 USD" in text and "Unmarked" in text and "2026-11-30" in text
    summary = ok("payroll", *RANGE).stdout
    assert "total: 305.00 USD" in summary


def test_json_shape(month):
    report = ok_json("payroll", *RANGE)
    assert {"from", "to", "teachers"} <= set(report)
    for row in report["teachers"]:
        assert {"email", "name", "lessons_paid", "amount_cents", "unmarked", "lessons"} <= set(row)
        assert isinstance(row["amount_cents"], int)
        for lesson in row["lessons"]:
            assert {"date", "kind", "attendance_id", "makeup_id", "status", "student", "amount_cents"} <= set(lesson)
            assert (lesson["attendance_id"] is None) == (lesson["kind"] == "makeup")
        assert row["lessons_paid"] == len(row["lessons"])


def test_csv_summary_and_detail(month):
    lines = list(csv.DictReader(io.StringIO(ok("payroll", *RANGE, "--csv").stdout)))
    by_email = {line["email"]: line for line in lines}
    assert by_email[month["ada"].email] == {
        "from": "2026-11-01",
        "to": "2026-11-30",
        "email": month["ada"].email,
        "name": "Ada Lovelace",
        "rate_cents": "2500",
        "lessons_paid": "5",
        "amount_cents": "12500",
        "unmarked": "2",
    }
    detail = list(csv.DictReader(io.StringIO(ok("payroll", *RANGE, "--csv", "--detail").stdout)))
    assert len(detail) == 11
    assert {int(line["attendance_id"]) for line in detail if line["attendance_id"]} == {
        *_ids(_teacher(ok_json("payroll", *RANGE), month["ada"]))[0],
        *_ids(_teacher(ok_json("payroll", *RANGE), month["bea"]))[0],
    }
    assert sum(int(line["amount_cents"]) for line in detail) == 30500
    refused("payroll", *RANGE, "--csv", "--json", message="not both", code=2)


def test_admin_api_answers_the_cli_numbers(month, client, session):
    cli = ok_json("payroll", *RANGE)
    response = client.get("/admin/payroll", query_string={"from": "2026-11-01", "to": "2026-11-30"}, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    api = response.get_json()
    assert api == cli
    one = client.get(
        "/admin/payroll", query_string={"from": "2026-11-01", "to": "2026-11-30", "teacher": month["ada"].email}, headers=ADMIN
    ).get_json()
    assert one == ok_json("payroll", *RANGE, "--teacher", month["ada"].email)
    missing = client.get(
        "/admin/payroll", query_string={"from": "2026-11-01", "to": "2026-11-30", "teacher": "x@y.z"}, headers=ADMIN
    )
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    reversed_ = client.get("/admin/payroll", query_string={"from": "2026-11-30", "to": "2026-11-01"}, headers=ADMIN)
    assert reversed_.status_code == 422 and reversed_.get_json()["field"] == "to"
    assert client.get("/admin/payroll", query_string={"from": "2026-11-01", "to": "2026-11-30"}).status_code == 401
    parent = bearer("user-a", "a@family.test")
    assert_problem(
        client.get("/admin/payroll", query_string={"from": "2026-11-01", "to": "2026-11-30"}, headers=parent),
        403,
        "admin-required",
    )
    reads = session.exec(select(AuditLog).where(AuditLog.action == "admin.read", AuditLog.entity == "/admin/payroll")).all()
    assert len(reads) == 4 and reads[0].after["query"] == "from=2026-11-01&to=2026-11-30"
    operation = client.get("/openapi.json").get_json()["paths"]["/admin/payroll"]["get"]
    assert operation["security"] == [{"adminBearer": []}]
    assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
    assert {(p["name"], p["required"]) for p in operation["parameters"]} == {("from", True), ("to", True), ("teacher", False)}


def test_set_rate_is_an_audited_write_and_bad_input_is_one_line(session):
    teacher = factories.teacher(session)
    session.commit()
    assert ok_json("teachers", "set-rate", teacher.email, "--per-lesson", "25.50")["rate_cents"] == 2550
    session.expire_all()
    assert session.get(Teacher, teacher.id).rate_cents == 2550
    audit = session.exec(select(AuditLog).where(AuditLog.action == "teacher.set_rate")).one()
    assert (audit.actor, audit.before["rate_cents"], audit.after["rate_cents"]) == ("admin", None, 2550)
    before = row_counts(session)
    for bad, message in (
        ("abc", "is not an amount"),
        ("-1", "not a non-negative amount"),
        ("25.001", "more than two decimals"),
        ("1e9", "at most"),
        ("nan", "not a non-negative amount"),
    ):
        refused("teachers", "set-rate", teacher.email, "--per-lesson", bad, message=message)
    refused("teachers", "set-rate", "nobody@studio.test", "--per-lesson", "25", message="no teacher")
    assert row_counts(session) == before
    assert session.get(Teacher, teacher.id).rate_cents == 2550
    # Payroll refusals are one line too.
    refused("payroll", "--from", "2026-11-30", "--to", "2026-11-01", message="before `from`")
    refused("payroll", "--from", "november", "--to", "2026-11-01", message="is not a date")
    refused("payroll", *RANGE, "--teacher", "nobody@studio.test", message="no teacher")


def test_a_teacher_without_a_rate_has_no_amount_yet(month, session):
    bea = session.get(Teacher, month["bea"].id)
    bea.rate_cents = None
    session.add(bea)
    session.commit()
    report = ok_json("payroll", *RANGE)
    assert (_teacher(report, bea)["lessons_paid"], _teacher(report, bea)["amount_cents"]) == (6, None)
    assert report["total_cents"] == 5 * 2500
    assert "no rate set for" in invoke("payroll", *RANGE).stdout


def _grow(session, month, size: int) -> None:
    """Another teacher with `size` enrollments, each marked, a substitute and a make-up."""
    teacher = factories.teacher(session)
    teacher.rate_cents = 1000
    slots = [factories.timeslot(session, teacher_row=teacher, weekday=0, start=f"{8 + hour}:00") for hour in range(size)]
    students = [factories.student(session) for _ in slots]
    session.commit()
    for slot, student in zip(slots, students, strict=True):
        enrollment_id = _enroll(slot.id, student.id)
        for day, status in ((2, "present"), (9, "no_show"), (16, "late_cancel"), (23, "excused")):
            _mark(enrollment_id, day, status)
        session.add(
            MakeUp(student_id=student.id, status=USED, timeslot_id=slot.id, lesson_date=date(2026, 11, 30), expires_on=NOV_30)
        )
    session.add(
        TimeOff(teacher_id=teacher.id, starts_on=date(2026, 11, 9), ends_on=date(2026, 11, 9), substitute_id=month["ada"].id)
    )
    session.commit()


def test_query_count_does_not_grow_with_the_studio(month, db, session):
    def count(**kwargs) -> int:
        session.expunge_all()
        with count_queries(db) as statements:
            payroll(session, first=NOV_1, last=NOV_30, today=date(2026, 12, 1), **kwargs)
        return len(statements)

    small = (count(), count(teacher=session.get(Teacher, month["ada"].id)))
    _grow(session, month, 6)
    _grow(session, month, 6)
    report = payroll(session, first=NOV_1, last=NOV_30, today=date(2026, 12, 1))
    assert sum(row["lessons_paid"] for row in report["teachers"]) == 11 + 2 * 6 * 4
    assert (count(), count(teacher=session.get(Teacher, month["ada"].id))) == small
    assert small == (6, 6)  # time off, attendance, make-ups, closures, enrollments, teachers


def test_unmarked_are_the_real_lesson_dates_of_taught_enrollments_only(month, session):
    """An enrollment cancelled on the 12th has unmarked lessons up to its end only; the closure
    (24th) is no lesson; a paused enrollment has none."""
    bea = month["bea"]
    tuesday = factories.timeslot(session, teacher_row=bea, weekday=1, start="17:00")
    thursday = factories.timeslot(session, teacher_row=bea, weekday=3, start="17:00")
    first, second = factories.student(session), factories.student(session)
    session.commit()
    cancelled, paused = _enroll(tuesday.id, first.id), _enroll(thursday.id, second.id)
    with session_scope() as unit:
        unit.get(Enrollment, cancelled).status, unit.get(Enrollment, cancelled).end_date = "cancelled", date(2026, 11, 12)
        unit.get(Enrollment, paused).status = "paused"
    session.expire_all()
    report = payroll(session, first=NOV_1, last=NOV_30, today=date(2026, 12, 1), teacher=session.get(Teacher, bea.id))
    assert [(entry["date"], entry["enrollment_id"]) for entry in report["teachers"][0]["unmarked"]] == [
        ("2026-11-03", cancelled),
        ("2026-11-10", cancelled),
    ]
