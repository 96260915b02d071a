"""`studioctl import roster` and `studioctl export roster` on both engines (issue 15, item 1): a
studio's roster in through the audited operations, all or nothing, idempotent, and out again
in the same shape."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlmodel import select

from models.enrollment import Enrollment
from models.people import Payee, Student
from models.scheduling import Timeslot
from tests import factories
from tests.support.cli import audit_actions, invoke, ok, ok_json, row_counts

NOW = datetime(2026, 10, 20, 14, 0, tzinfo=UTC)  # Tuesday 10:00 in New York
HEADER = "family_email,family_name,phone,student,birth_date,instrument,teacher_email,weekday,time,plan,start_date"


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def studio(db, session):
    ada = factories.teacher(session, name="Ada", instruments=("piano", "guitar"))
    bo = factories.teacher(session, name="Bo", instruments=("drums",))
    factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19))
    factories.plan(session, frequency="monthly")
    # An existing family whose student already holds Ada's Tuesday 17:00 slot (offline).
    kim = factories.payee(session, email="kim@family.test", name="Kim")
    cleo = factories.student(session, payee_row=kim, name="Cleo")
    tuesday = factories.timeslot(session, teacher_row=ada, weekday=1, start="17:00")
    piano = factories.instrument(session, "piano")
    session.add(
        Enrollment(
            student_id=cleo.id,
            timeslot_id=tuesday.id,
            instrument_id=piano.id,
            status="active",
            offline=True,
            start_date=date(2026, 9, 8),
        )
    )
    session.flush()
    return {"ada": ada, "bo": bo, "kim": kim, "cleo": cleo, "tuesday": tuesday}


def _roster(tmp_path, studio, *rows: str, name: str = "roster.csv"):
    path = tmp_path / name
    text = "\n".join([HEADER, *rows]).format(ada=studio["ada"].email, bo=studio["bo"].email) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = (
    # A new family, two children: one offline since September (a past start), one on a monthly plan.
    "lee@family.test,Lee,+1 555 0100,Ann,2015-03-02,piano,{ada},mon,16:00,,2026-09-14",
    "LEE@family.test,Lee,+1 555 0100,Ben,,guitar,{ada},monday,16:30,monthly,",
    # The existing family and student already on their slot, and a new slot of Bo's for her.
    "kim@family.test,Kim,,Cleo,,piano,{ada},tue,17:00,,",
    "kim@family.test,Kim,,Cleo,,drums,{bo},wed,15:00,,",
    # A student without a slot yet, and a family without students.
    "ng@family.test,Ng,,Dan,2016-01-01,,,,,,",
    "ortiz@family.test,Ortiz,,,,,,,,,",
)


def test_a_good_file_creates_what_is_missing_through_the_audited_operations(studio, session, tmp_path, task_queue):
    before = row_counts(session)
    result = ok("import", "roster", _roster(tmp_path, studio, *GOOD))
    assert "created 3 family(ies), 3 student(s), 3 timeslot(s), 3 enrollment(s); 1 row(s) already there" in result.stdout
    after = row_counts(session)
    assert {name: after[name] - before[name] for name in ("payee", "student", "timeslot", "enrollment")} == {
        "payee": 3,
        "student": 3,
        "timeslot": 3,
        "enrollment": 3,
    }
    lee = session.exec(select(Payee).where(Payee.email == "lee@family.test")).one()
    assert (lee.name, lee.phone) == ("Lee", "+1 555 0100")
    ann, ben = session.exec(select(Student).where(Student.payee_id == lee.id).order_by(Student.name)).all()
    assert ann.birth_date == date(2015, 3, 2) and ben.birth_date is None
    offline = session.exec(select(Enrollment).where(Enrollment.student_id == ann.id)).one()
    assert (offline.status, offline.offline, offline.start_date) == ("active", True, date(2026, 9, 14))
    held = session.exec(select(Enrollment).where(Enrollment.student_id == ben.id)).one()
    assert (held.status, held.start_date) == ("provisional", date(2026, 10, 26))
    assert task_queue.pending() == [("book_enrollment", (held.id,))]  # its Stripe booking, after commit
    wednesday = session.exec(select(Timeslot).where(Timeslot.teacher_id == studio["bo"].id)).one()
    assert session.exec(select(Enrollment).where(Enrollment.timeslot_id == wednesday.id)).one().student_id == studio["cleo"].id
    assert audit_actions(session) == [
        ("admin", action)
        for action in (
            "payee.add",
            "student.add",
            "timeslot.add",
            "enrollment.assign",
            "student.add",
            "timeslot.add",
            "enrollment.hold",
            "timeslot.add",
            "enrollment.assign",
            "payee.add",
            "student.add",
            "payee.add",
        )
    ]


def test_three_bad_rows_import_nothing_and_are_each_named_by_line(studio, session, tmp_path, task_queue):
    path = _roster(
        tmp_path,
        studio,
        GOOD[0],
        "lee@family.test,Lee,+1 555 0100,Ben,,guitar,nobody@studio.test,mon,16:30,monthly,",  # line 3
        GOOD[2],
        "ng@family.test,Ng,,Dan,,drums,{bo},wed,16:15,,",  # line 5: not on the half hour
        "ng@family.test,Ng,,Eve,,drums,{bo},wed,16:00,monthly,2026-10-14",  # line 6: a paid booking may not start in the past
        GOOD[5],
    )
    before = row_counts(session)
    result = invoke("import", "roster", path)
    assert result.exit_code == 1, result.output
    named = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert named == [
        "line 3: no teacher nobody@studio.test",
        "line 5: 16:15 is not on the half hour (slots start at :00 or :30)",
        "line 6: start date 2026-10-14 is in the past",
    ]
    assert "3 bad row(s) in the roster; nothing was imported" in result.stderr and "Traceback" not in result.output
    assert row_counts(session) == before  # the good rows, written before line 6 failed, were rolled back too
    assert task_queue.names() == []


def test_a_bad_header_or_malformed_cells_are_named_too(studio, session, tmp_path):
    before = row_counts(session)
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("family_email,family_name,student\nlee@family.test,Lee,Ann\n")
    result = invoke("import", "roster", bad_header)
    assert (
        result.exit_code == 1 and "line 1: the header must name" in result.stderr and "missing column(s) phone" in result.stderr
    )
    path = _roster(
        tmp_path,
        studio,
        "not-an-email,Lee,,Ann,2015-13-01,piano,{ada},mon,16:00,,",
        "lee@family.test,Lee,,Ann,,piano,{ada},,,,",
        "lee@family.test,Lee,,Ann,,piano,{ada},mon,16:00,,2026-09-15",
        "lee@family.test,Lee,,Ann,,piano,{ada},mon,16:00,,",
        "lee@family.test,Lea,,Bea,,piano,{ada},mon,17:00,,",
    )
    named = [line for line in invoke("import", "roster", path).stderr.splitlines() if line.startswith("line ")]
    assert named == [
        "line 2: 'not-an-email' is not an email address; birth_date '2015-13-01' is not a date (YYYY-MM-DD)",
        "line 3: an enrollment needs weekday, time too",
        "line 4: start_date 2026-09-15 is not a Mon",
        "line 6: family lee@family.test is 'Lee' (phone none) on line 5",
    ]
    assert row_counts(session) == before


def test_importing_the_same_file_again_changes_nothing(studio, session, tmp_path, task_queue):
    path = _roster(tmp_path, studio, *GOOD)
    ok("import", "roster", path)
    before, audit = row_counts(session), audit_actions(session)
    task_queue.clear()
    again = ok("import", "roster", path)
    assert "created 0 family(ies), 0 student(s), 0 timeslot(s), 0 enrollment(s); 6 row(s) already there" in again.stdout
    assert row_counts(session) == before and audit_actions(session) == audit
    assert task_queue.names() == []


def test_a_dry_run_says_what_would_be_created_and_writes_nothing(studio, session, tmp_path, task_queue):
    before = row_counts(session)
    path = _roster(tmp_path, studio, *GOOD)
    out = ok("import", "roster", path, "--dry-run").stdout
    assert "dry run: would create 3 family(ies), 3 student(s), 3 timeslot(s), 3 enrollment(s); 1 row(s) already there" in out
    assert "nothing was written" in out and "Would create" in out
    planned = ok_json("import", "roster", path, "--dry-run")
    assert (planned["dry_run"], planned["families"], planned["enrollments"], planned["unchanged"]) == (True, 3, 3, 1)
    assert [(row["line"], row["student"], row["creates"]) for row in planned["rows"]] == [
        (2, "Ann", ["family", "student", "timeslot", "enrollment"]),
        (3, "Ben", ["student", "timeslot", "enrollment"]),
        (4, "Cleo", []),
        (5, "Cleo", ["timeslot", "enrollment"]),
        (6, "Dan", ["family", "student"]),
        (7, "", ["family"]),
    ]
    assert row_counts(session) == before and task_queue.names() == []
    # A dry run also names what the booking rules would refuse.
    bad = _roster(
        tmp_path,
        studio,
        "ng@family.test,Ng,,Eve,,drums,{bo},wed,16:00,monthly,2026-10-14",
        "ng@family.test,Ng,,Dan,,drums,{bo},wed,16:30,,",
        "ng@family.test,Ng,,Fay,,drums,{bo},wed,16:30,,",
        name="bad.csv",
    )
    refused = invoke("import", "roster", bad, "--dry-run")
    assert refused.exit_code == 1
    assert [line for line in refused.stderr.splitlines() if line.startswith("line ")] == [
        "line 2: start date 2026-10-14 is in the past",
        f"line 4: {studio['bo'].email} Wed 16:30 is taken by line 3",  # a slot new in this import
    ]
    assert row_counts(session) == before


def test_export_then_import_changes_nothing(studio, session, tmp_path):
    ok("import", "roster", _roster(tmp_path, studio, *GOOD))
    out = tmp_path / "export.csv"
    assert "exported 6 roster row(s)" in ok("export", "roster", "--out", out).stdout
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert ",".join(rows[0]) == HEADER
    ann = next(row for row in rows if row["student"] == "Ann")
    assert ann == {
        "family_email": "lee@family.test",
        "family_name": "Lee",
        "phone": "'+1 555 0100",  # safe to open in a spreadsheet; import takes the guard off
        "student": "Ann",
        "birth_date": "2015-03-02",
        "instrument": "piano",
        "teacher_email": studio["ada"].email,
        "weekday": "mon",
        "time": "16:00",
        "plan": "",
        "start_date": "2026-09-14",
    }
    assert next(row for row in rows if row["student"] == "Ben")["plan"].isdigit()  # the plan's id
    assert [row["family_email"] for row in rows if not row["teacher_email"]] == ["ng@family.test", "ortiz@family.test"]
    with out.open(encoding="utf-8", newline="") as file:
        assert ok("export", "roster").stdout.replace("\r\n", "\n") == file.read().replace("\r\n", "\n")  # stdout
    before, audit = row_counts(session), audit_actions(session)
    again = ok("import", "roster", out)
    assert "created 0 family(ies), 0 student(s), 0 timeslot(s), 0 enrollment(s); 6 row(s) already there" in again.stdout
    assert row_counts(session) == before and audit_actions(session) == audit


def test_export_of_a_table_still_needs_out(studio):
    result = invoke("export", "enrollment")
    assert result.exit_code == 1 and "--out FILE is required" in result.stderr
