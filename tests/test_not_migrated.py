"""A database that was never migrated: one clear line, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.processes import ROOT

LINE = "error: database not migrated: run `studioctl db upgrade`"


def _studioctl(url: str, cwd, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "studioctl.main", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_missing_sqlite_file_is_not_created_and_says_how_to_migrate(tmp_path):
    database = tmp_path / "studio.db"
    result = _studioctl(f"sqlite:///{database}", tmp_path, "teachers", "list")
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip() == LINE
    assert not database.exists()  # no empty file left behind
    assert _studioctl(f"sqlite:///{database}", tmp_path, "db", "upgrade").returncode == 0  # the one door that creates it
    assert _studioctl(f"sqlite:///{database}", tmp_path, "teachers", "list").returncode == 0


@pytest.mark.postgres
def test_an_empty_postgres_database_says_how_to_migrate(tmp_path, engine_name):
    url = create_pg_database("studio_unmigrated")
    try:
        result = _studioctl(url, tmp_path, "teachers", "list")
        assert result.returncode == 1
        assert (result.stdout + result.stderr).strip() == LINE
    finally:
        drop_pg_database(url)


def test_the_api_answers_503_problem_json_on_a_database_not_migrated(tmp_path, monkeypatch):
    from models.config import reset_settings
    from tests.support.api import make_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    reset_settings()
    response = make_app().test_client().get("/public/teachers")
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "not-migrated"
    assert not (tmp_path / "none.db").exists()
