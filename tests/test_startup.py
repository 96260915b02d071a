"""`studioctl --help` stays instant: it imports no SQLAlchemy, Stripe or Huey (a group's
module, and what it needs, loads only when that group runs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

HEAVY = ("sqlalchemy", "sqlmodel", "stripe", "huey", "flask", "mailjet_rest")


@pytest.mark.parametrize("argv", [["--help"], ["teachers", "--help"], ["enrollments", "--help"]])
def test_help_imports_nothing_heavy(argv):
    code = (
        "import sys\nfrom studioctl.main import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


# The table classes (pydantic models and mappers) that the read-only dashboard path is built
# to avoid (models.dashboard's light Core handles); the waiting list's after-flush watch would
# load them, and is installed only before a writing unit of work.
TABLE_MODULES = ("models.booking", "models.enrollment", "models.offers", "models.people", "models.scheduling")


def test_dashboard_today_loads_no_table_classes(tmp_path):
    from tests.support.databases import migrate

    url = f"sqlite:///{tmp_path / 'studio.db'}"
    migrate(url)
    code = (
        "import sys\nfrom studioctl.main import app\n"
        "try:\n    app(['dashboard', 'today', '--json'])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print(sorted(name for name in {TABLE_MODULES!r} if name in sys.modules))"
    )
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_the_api_process_loads_no_stripe_sdk_by_enqueueing_tasks():
    """The API enqueues tasks (`workers.tasks`) but never calls Stripe: the SDK (~18 MB of RSS per
    gunicorn worker, bench/memory.py) loads only where a task runs."""
    code = (
        "import sys\nimport workers.tasks, workers.consumer  # noqa: F401\n"
        "print(sorted(name for name in ('stripe', 'mailjet_rest', 'twilio') if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
