"""`studioctl instruments | teachers | payees | students` on both engines."""

from __future__ import annotations

import pytest

from models.people import Payee
from tests import factories
from tests.support.cli import audit_actions, invoke, ok, ok_json, refused, row_counts


@pytest.fixture(autouse=True)
def _db(db):
    return db


def test_instruments_add_list_remove_with_audit(session):
    added = ok_json("instruments", "add", "Cello")
    assert added["name"] == "cello"
    rows = ok_json("instruments", "list")
    assert [row["name"] for row in rows] == ["cello"] and rows[0]["id"] == added["id"]
    assert "cello" in ok("instruments", "list").stdout
    ok("instruments", "remove", "cello")
    assert ok_json("instruments", "list") == []
    assert audit_actions(session) == [("admin", "instrument.add"), ("admin", "instrument.remove")]


def test_instrument_refusals_change_nothing(session):
    factories.teacher(session, instruments=("piano",))
    before = row_counts(session)
    refused("instruments", "add", "PIANO", message="exists already")
    refused("instruments", "remove", "piano", message="teach piano")
    refused("instruments", "remove", "kazoo", message="no instrument named 'kazoo'")
    assert row_counts(session) == before


def test_teacher_lifecycle(session):
    factories.instrument(session, "piano")
    factories.instrument(session, "guitar")
    teacher = ok_json(
        "teachers",
        "add",
        "--name",
        "Ada Lovelace",
        "--email",
        "ADA@studio.example",
        "--instrument",
        "piano",
        "--bio",
        "Loves Bach",
    )
    assert teacher["email"] == "ada@studio.example" and teacher["instruments"] == ["piano"] and teacher["active"]
    shown = ok_json("teachers", "show", "ada@studio.example")
    assert shown == teacher
    updated = ok_json("teachers", "update", str(teacher["id"]), "--instrument", "guitar", "--instrument", "piano")
    assert updated["instruments"] == ["guitar", "piano"]
    assert ok_json("teachers", "deactivate", "ada@studio.example")["active"] is False
    assert ok_json("teachers", "list") == []
    assert [row["id"] for row in ok_json("teachers", "list", "--all")] == [teacher["id"]]
    assert ok_json("teachers", "activate", str(teacher["id"]))["active"] is True
    table = ok("teachers", "list").stdout
    assert "Ada Lovelace" in table and "guitar, piano" in table
    assert [action for _, action in audit_actions(session)] == [
        "teacher.add",
        "teacher.update",
        "teacher.update",
        "teacher.update",
    ]


def test_teacher_refusals(session):
    existing = factories.teacher(session)
    before = row_counts(session)
    refused("teachers", "add", "--name", "X", "--email", existing.email, message="exists already")
    refused(
        "teachers",
        "add",
        "--name",
        "X",
        "--email",
        "x@studio.example",
        "--instrument",
        "kazoo",
        message="no instrument named 'kazoo'",
    )
    refused("teachers", "add", "--name", "X", "--email", "not-an-email", message="is not an email address")
    refused("teachers", "show", "999999", message="no teacher '999999'")
    refused("teachers", "update", str(existing.id), message="give at least one", code=2)
    assert row_counts(session) == before
    usage = invoke("teachers", "add", "--name", "X")
    assert usage.exit_code == 2 and "--email" in usage.output


def test_payees_and_students(session):
    payee = ok_json("payees", "add", "--name", "Sam Garcia", "--email", "sam@family.example", "--phone", "+1 555 0100")
    assert payee["email"] == "sam@family.example" and payee["student_count"] == 0
    refused("payees", "add", "--name", "Other", "--email", "SAM@family.example", message="exists already")
    student = ok_json(
        "students",
        "add",
        "--payee",
        "sam@family.example",
        "--name",
        "Mia Garcia",
        "--birth-date",
        "2016-04-02",
        "--notes",
        "beginner",
    )
    assert student["payee"] == "Sam Garcia" and student["birth_date"] == "2016-04-02"
    shown = ok_json("payees", "show", str(payee["id"]))
    assert [s["name"] for s in shown["students"]] == ["Mia Garcia"]
    assert ok_json("payees", "update", "sam@family.example", "--phone", "")["phone"] is None
    assert ok_json("students", "update", str(student["id"]), "--notes", "", "--name", "Mia G.") | {} == {
        **student,
        "name": "Mia G.",
        "notes": None,
    }
    other = factories.student(session)
    assert {row["id"] for row in ok_json("students", "list", "--payee", str(payee["id"]))} == {student["id"]}
    assert {row["id"] for row in ok_json("students", "list")} == {student["id"], other.id}
    ok("students", "remove", str(student["id"]))
    assert {row["id"] for row in ok_json("students", "list")} == {other.id}
    refused("students", "show", str(student["id"]), message=f"no student {student['id']}")
    assert "Mia G." not in ok("payees", "show", "sam@family.example").stdout  # archived students are hidden
    actions = [action for _, action in audit_actions(session)]
    assert actions == ["payee.add", "student.add", "payee.update", "student.update", "student.remove"]


def test_student_refusals_change_nothing(session):
    payee = factories.payee(session)
    before = row_counts(session)
    refused("students", "add", "--payee", "nobody@family.example", "--name", "Kid", message="no payee")
    refused("students", "add", "--payee", str(payee.id), "--name", "Kid", "--birth-date", "2016-13-01", message="is not a date")
    refused("students", "add", "--payee", str(payee.id), "--name", "Kid", "--birth-date", "2999-01-01", message="in the future")
    refused("payees", "show", "404", message="no payee '404'")
    assert row_counts(session) == before
    assert session.get(Payee, payee.id).name == payee.name


@pytest.mark.parametrize(
    "args, message",
    [
        (("students", "show", "99999999999999999999"), "out of range"),
        (("enrollments", "show", "3000000000"), ""),
        (("teachers", "show", "²"), "no teacher '²'"),
        (("payees", "show", "99999999999"), "no payee"),
        (("students", "add", "--payee", "1", "--name", "Ada", "--notes", "a\x00b"), ""),
    ],
)
def test_odd_ids_and_values_are_one_clear_line(session, args, message):
    factories.payee(session)
    session.commit()
    before = row_counts(session)
    result = invoke(*args)
    if result.exit_code == 0:  # SQLite stores a NUL byte; PostgreSQL refuses it
        return
    refused(*args, message=message)
    assert "SELECT" not in result.stderr and "INSERT" not in result.stderr and "[SQL" not in result.stderr
    assert row_counts(session) == before


@pytest.mark.parametrize(
    "args", [("dashboard", "payments", "--days", "99999999999"), ("makeups", "list", "--expiring-within", "99999999999")]
)
def test_huge_day_counts_are_usage_errors(args):
    refused(*args, message="less than or equal", code=2)
