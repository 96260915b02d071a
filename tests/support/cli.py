"""Helpers for CLI tests: run `studioctl` in-process, read its JSON, count rows."""

from __future__ import annotations

import json

from sqlmodel import Session, func, select
from typer.testing import CliRunner

runner = CliRunner()


def invoke(*args: str):
    """Run `studioctl ARGS` in-process (inside the test's rolled-back transaction)."""
    from studioctl.main import app

    return runner.invoke(app, [str(arg) for arg in args])


def ok(*args: str):
    """Run a command that must succeed; return its result."""
    result = invoke(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


def ok_json(*args: str):
    """Run a command with `--json` that must succeed; return the parsed stdout."""
    return json.loads(ok(*args, "--json").stdout)


def refused(*args: str, message: str, code: int = 1):
    """Run a command that must be refused with `code` and a one-line error containing `message`."""
    result = invoke(*args)
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}"
    assert message in result.stderr, result.stderr
    if code == 1:
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def row_counts(session: Session) -> dict[str, int]:
    """How many rows every table holds (to prove a refused command changed nothing)."""
    from models.tables import TABLES

    session.expire_all()
    return {name: session.exec(select(func.count()).select_from(model)).one() for name, model in TABLES.items()}


def audit_actions(session: Session) -> list[tuple[str, str]]:
    """(actor, action) of every audit row, oldest first."""
    from models.audit import AuditLog

    session.expire_all()
    return [(row.actor, row.action) for row in session.exec(select(AuditLog).order_by(AuditLog.id)).all()]
