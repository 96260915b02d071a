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
