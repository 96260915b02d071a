"""Issue 11, items 1 and 16: `db downgrade` never drops data unasked; a database that is not
at the migrations' head (never migrated, older, or at a revision this code does not know), a
mistyped SQLite path and a read-only SQLite file each get one clear line.

Every test runs `studioctl` in a child process against a database of its own, built by
`db upgrade` (the migrations run on their own connection, outside any test transaction)."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.databases import create_pg_database, drop_pg_database, migrate
from tests.support.processes import ROOT

NOT_MIGRATED = "error: database not migrated: run `studioctl db upgrade`"


def _head_and_previous() -> tuple[str, str]:
    from alembic.script import ScriptDirectory

    from migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    return head, script.get_revision(head).down_revision


def _env(url: str) -> dict:
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    env.pop("REDIS_URL", None)
    return env


def studioctl(url: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "studioctl.main", *args], env=_env(url), capture_output=True, text=True, timeout=90
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and not result.stdout.strip(), result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def fresh_url(engine_name, tmp_path):
    """An empty database of the engine under test (SQLite: a path with no file yet)."""
    if engine_name == "postgres":
        url = create_pg_database("studio_hardening")
        yield url
        from models.db import dispose_engines

        dispose_engines()
        drop_pg_database(url)
    else:
        yield f"sqlite:///{tmp_path / 'studio.db'}"


@pytest.fixture
def migrated_url(fresh_url):
    migrate(fresh_url)
    return fresh_url


@pytest.fixture
def sqlite_url(tmp_path):
    """A migrated SQLite database (for what only SQLite has: files, terminals are engine-blind)."""
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    migrate(url)
    return url


def _sql(url: str, statement: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(statement))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _populate(url: str) -> None:
    assert studioctl(url, "teachers", "add", "--name", "Ada", "--email", "ada@studio.example").returncode == 0


# Item 1 -------------------------------------------------------------------------------------


def test_item_01_downgrade_without_a_target_is_refused_and_drops_nothing(migrated_url):
    line = one_line_error(studioctl(migrated_url, "db", "downgrade"))
    assert "name the target revision" in line
    assert {"teacher", "enrollment", "alembic_version"} <= _tables(migrated_url)
    assert _sql(migrated_url, "SELECT version_num FROM alembic_version") == [(_head_and_previous()[0],)]


def test_item_01_downgrade_base_of_a_populated_database_needs_yes(migrated_url):
    _populate(migrated_url)
    line = one_line_error(studioctl(migrated_url, "db", "downgrade", "base"))
    assert "teacher 1" in line and "--yes" in line
    assert _sql(migrated_url, "SELECT email FROM teacher") == [("ada@studio.example",)]  # nothing dropped
    assert _sql(migrated_url, "SELECT version_num FROM alembic_version") == [(_head_and_previous()[0],)]

    done = studioctl(migrated_url, "db", "downgrade", "base", "--yes")
    assert done.returncode == 0, done.stderr
    assert "database at base" in done.stdout
    assert "teacher" not in _tables(migrated_url)


def test_item_01_an_empty_database_steps_down_with_minus_one_and_no_yes(migrated_url):
    previous = _head_and_previous()[1]
    result = studioctl(migrated_url, "db", "downgrade", "-1")
    assert result.returncode == 0, result.stderr
    assert f"database at {previous}" in result.stdout
    assert _sql(migrated_url, "SELECT version_num FROM alembic_version") == [(previous,)]
    assert "Can't locate revision" in one_line_error(studioctl(migrated_url, "db", "downgrade", "nope", "--yes"))


def test_item_01_at_a_terminal_the_row_counts_are_shown_and_no_keeps_everything(sqlite_url):
    migrated_url = sqlite_url
    _populate(migrated_url)
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "studioctl.main", "db", "downgrade", "base"],
        env=_env(migrated_url),
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    output = _read_until(main, "[y/N]")
    os.write(main, b"n\n")
    output += _read_until(main, None)
    process.wait(timeout=30)
    os.close(main)
    assert "teacher 1" in output and "audit_log 1" in output, output
    assert process.returncode == 1
    assert _sql(migrated_url, "SELECT email FROM teacher") == [("ada@studio.example",)]


def _read_until(fd: int, text: str | None, timeout: float = 60) -> str:
    """What the terminal shows until `text` appears (None: until the program closes it)."""
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text is not None and text.encode() in seen:
            break
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return re.sub(r"\x1b\[[0-9;]*m", "", seen.decode(errors="replace"))  # colours off


# Item 16 ------------------------------------------------------------------------------------


def test_item_16_a_database_at_an_unknown_revision_is_not_migrated(migrated_url):
    _sql(migrated_url, "UPDATE alembic_version SET version_num = 'f00dfeed'")  # a newer release's
    assert one_line_error(studioctl(migrated_url, "teachers", "list")) == NOT_MIGRATED
    assert "unknown to these migrations" in studioctl(migrated_url, "db", "current").stdout
    refused = one_line_error(studioctl(migrated_url, "db", "upgrade"))
    assert "f00dfeed" in refused and "do not know" in refused
    assert one_line_error(studioctl(migrated_url, "db", "downgrade", "base", "--yes")) == refused
    assert "teacher" in _tables(migrated_url)


def test_item_16_a_database_behind_the_head_is_not_migrated_until_upgraded(migrated_url):
    assert studioctl(migrated_url, "db", "downgrade", "0001").returncode == 0
    assert one_line_error(studioctl(migrated_url, "teachers", "list")) == NOT_MIGRATED
    assert studioctl(migrated_url, "db", "upgrade").returncode == 0
    assert studioctl(migrated_url, "teachers", "list").returncode == 0


def test_item_16_an_empty_database_is_not_migrated(fresh_url):
    if fresh_url.startswith("sqlite"):
        Path(fresh_url.removeprefix("sqlite:///")).touch()  # a file, but no schema
    assert one_line_error(studioctl(fresh_url, "teachers", "list")) == NOT_MIGRATED
    assert one_line_error(studioctl(fresh_url, "plans", "list")) == NOT_MIGRATED


def test_item_16_the_api_answers_503_not_migrated_at_an_unknown_revision(migrated_url, monkeypatch):
    from models.db import dispose_engines
    from tests.support.api import make_app

    _sql(migrated_url, "UPDATE alembic_version SET version_num = 'f00dfeed'")
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    try:
        response = make_app().test_client().get("/public/teachers")
    finally:
        dispose_engines()
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "not-migrated"
    assert response.headers["Retry-After"] == "30"


def test_item_16_migration_heads_read_without_alembic_match_alembics():
    from alembic.script import ScriptDirectory

    from migrations import alembic_config, head_revisions

    assert head_revisions() == frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _without_root_override() -> tuple[str, ...]:
    """Root writes read-only files anyway: drop that capability for the child (setpriv)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only file cannot be simulated")
    return (setpriv, "--inh-caps=-dac_override", "--bounding-set=-dac_override", "--")


def test_item_16_a_read_only_sqlite_file_says_read_only(sqlite_url, tmp_path):
    migrated_url = sqlite_url
    prefix = _without_root_override()
    database = tmp_path / "studio.db"
    for leftover in tmp_path.glob("studio.db-*"):
        leftover.unlink()
    database.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    tmp_path.chmod(0o555)  # nor may SQLite make its -wal and -shm files beside it
    try:
        line = one_line_error(
            studioctl(migrated_url, "teachers", "add", "--name", "Ada", "--email", "ada@studio.example", prefix=prefix)
        )
    finally:
        tmp_path.chmod(0o755)
        database.chmod(0o644)
    assert "read-only" in line and "nothing was changed" in line
    assert _sql(migrated_url, "SELECT count(*) FROM teacher") == [(0,)]
