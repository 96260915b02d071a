"""Issue 15's new surface attacked (review 15): each test is one defect found, failing before its fix.

Tried and found sound (no test here): absurd and reversed payroll / time-off ranges, a 100-year
payroll, huge, negative, NaN and exponent rates, names in other case, '/' and digits in location
names, unknown and out-of-range ids, SQL-ish names, `?location=` and `from`/`to` malformed,
missing or too long on the API, empty CSV, BOM, CRLF, CR-only, extra columns and cells.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from models.audit import AuditLog
from models.locations import Location, Room
from models.people import Payee, Teacher
from models.time_off import TimeOff
from tests import factories
from tests.support.cli import invoke, ok, refused, row_counts
from tests.test_roster_import import HEADER


@pytest.mark.parametrize("amount", ["1_000", "١٢", "２５"])
def test_a_rate_in_other_digits_or_with_underscores_is_not_an_amount(session, amount):
    # Decimal() reads '1_000' as 1000 and Arabic-Indic or full-width digits as numbers.
    teacher = factories.teacher(session)
    session.commit()
    refused("teachers", "set-rate", teacher.email, "--per-lesson", amount, message="is not an amount")
    session.expire_all()
    assert session.get(Teacher, teacher.id).rate_cents is None
    assert ok("teachers", "set-rate", teacher.email, "--per-lesson", "1000").exit_code == 0


@pytest.mark.parametrize("name", ["Main\x00", "\u200b", "Down\u200btown", "Room\x07"])
def test_location_and_room_names_refuse_control_and_invisible_characters(session, name):
    # SQLite stored a NUL (PostgreSQL refused it), and an invisible name looked empty or like another.
    ok("locations", "add", "--name", "Downtown")
    before = row_counts(session)
    refused("locations", "add", "--name", name, message="cannot hold control or invisible characters")
    refused("rooms", "add", "--location", "Downtown", "--name", name, message="cannot hold control or invisible characters")
    refused("locations", "add", "--name", "Uptown", "--address", f"1 {name} St", message="cannot hold control or invisible")
    assert row_counts(session) == before
    assert session.exec(select(Location.name)).all() == ["Downtown"] and session.exec(select(Room)).all() == []


def test_a_time_off_reason_refuses_control_characters(session):
    teacher = factories.teacher(session)
    session.commit()
    refused(
        "teachers", "time-off", "add", "--teacher", teacher.email, "--from", "2099-06-01", "--to", "2099-06-02",
        "--reason", "flu\x00", message="cannot hold control characters",
    )  # fmt: skip
    assert session.exec(select(TimeOff)).all() == []


def _import(tmp_path, text: str):
    path = tmp_path / "roster.csv"
    path.write_text(f"{HEADER}\n{text}\n", encoding="utf-8")
    return invoke("import", "roster", str(path))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"long@family.test,{'L' * 121},,,,,,,,,", "line 2: payee name is longer than 120 characters"),
        (f"long@family.test,Long,,{'S' * 121},,,,,,,", "line 2: student name is longer than 120 characters"),
        (f"long@family.test,Long,{'5' * 41},,,,,,,,", "line 2: phone is longer than 40 characters"),
        ("nul@family.test,A\x00B,,,,,,,,,", "line 2: payee name cannot hold control characters"),
    ],
)
def test_a_roster_cell_longer_than_its_column_or_with_a_nul_is_named_by_line(session, tmp_path, row, message):
    # SQLite stored it; PostgreSQL refused the whole file without naming the line.
    before = row_counts(session)
    result = _import(tmp_path, row)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr, result.stderr
    assert row_counts(session) == before
    assert session.exec(select(Payee)).all() == []


def test_a_roster_cell_past_the_csv_field_limit_is_one_line(session, tmp_path):
    result = _import(tmp_path, "big@family.test," + "B" * 200_000 + ",,,,,,,,,")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot be read as CSV: field larger than field limit" in result.stderr
    assert "unexpected" not in result.stderr
    assert session.exec(select(AuditLog)).all() == []


@pytest.mark.parametrize("table", ["roster", "enrollment"])
def test_an_export_to_a_path_that_cannot_be_written_is_one_line(session, tmp_path, table):
    for out, reason in ((tmp_path / "missing" / "x.csv", "No such file or directory"), ("/dev/full", "No space left")):
        result = refused("export", table, "--out", str(out), message=f"cannot write {out}: {reason}")
        assert "unexpected" not in result.stderr
