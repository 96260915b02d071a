"""`studioctl seed`: instruments idempotent, the demo studio believable and refused on a full database."""

from __future__ import annotations

from sqlmodel import func, select
from typer.testing import CliRunner

from models.attendance import Attendance
from models.enrollment import Enrollment
from models.people import Instrument, Payee, Student, Teacher
from models.scheduling import Semester, SemesterClosure, Timeslot
from studioctl.main import app

runner = CliRunner()


def _count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def test_seed_instruments_is_idempotent(db, session):
    for _ in range(2):
        result = runner.invoke(app, ["seed", "instruments"])
        assert result.exit_code == 0, result.output
    assert sorted(session.exec(select(Instrument.name)).all()) == ["bass", "drums", "guitar", "piano"]


def test_seed_demo_builds_a_believable_studio_once(db, session):
    result = runner.invoke(app, ["seed", "demo"])
    assert result.exit_code == 0, result.output
    counts = {
        model.__name__: _count(session, model)
        for model in (Teacher, Timeslot, Semester, SemesterClosure, Payee, Student, Enrollment, Attendance)
    }
    assert counts["Teacher"] == 4 and counts["Payee"] == 20 and counts["Student"] == 30
    assert 50 <= counts["Timeslot"] <= 70 and counts["Semester"] == 2 and counts["SemesterClosure"] >= 4
    assert 15 <= counts["Enrollment"] <= 30
    assert (
        session.exec(select(func.count()).select_from(Enrollment).where(Enrollment.status == "active")).one()
        == counts["Enrollment"]
    )

    again = runner.invoke(app, ["seed", "demo"])
    assert again.exit_code == 1
    assert "already has teachers" in again.output
    skipped = runner.invoke(app, ["seed", "demo", "--skip-if-seeded"])
    assert skipped.exit_code == 0 and "skipped" in skipped.output
    assert {
        model.__name__: _count(session, model)
        for model in (Teacher, Timeslot, Semester, SemesterClosure, Payee, Student, Enrollment, Attendance)
    } == counts
