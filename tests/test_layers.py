"""The house in order: `models/` imports one way (import-linter's contracts in pyproject.toml,
also run by `make typecheck`), its modules stay small, and the shared helpers exist once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
NY = ZoneInfo("America/New_York")


def test_the_import_contracts_are_kept(tmp_path):
    """Layers of models/, no transport or outer service in models/, workers/ importing no
    transport, no cycle in models/ or workers/ — function-level imports included. (A child
    process: import-linter configures logging, which would silence this process's loggers.)"""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run(
        [sys.executable, "-c", code, "--no-logo", "--cache-dir", str(tmp_path), "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_outside_the_migrations_is_over_400_lines():
    packages = ("models", "workers", "webapi", "studioctl", "demo")
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in packages
        for path in (ROOT / package).rglob("*.py")
    }
    assert {name: lines for name, lines in sizes.items() if lines > 400} == {}


def test_studio_today_is_the_date_in_the_studios_zone():
    from models.clock import studio_today

    assert studio_today(datetime(2026, 11, 24, 3, 0, tzinfo=UTC)) == date(2026, 11, 23)  # 22:00 in New York
    assert studio_today(datetime(2026, 11, 24, 5, 0, tzinfo=UTC)) == date(2026, 11, 24)


def test_one_slot_label():
    from models.clock import slot_label
    from models.scheduling import Timeslot

    assert slot_label(0, 16 * 60) == "Mon 16:00"
    assert Timeslot(teacher_id=1, weekday=6, start_minute=9 * 60 + 30).label == "Sun 09:30"


def test_next_occurrence_skips_closures_and_keeps_the_wall_clock_across_dst():
    from models.clock import next_occurrence

    lesson = datetime(2026, 10, 26, 16, 0, tzinfo=NY)  # a Monday, 16:00 EDT; DST ends on Nov 1
    assert next_occurrence(0, 16 * 60, after=datetime(2026, 10, 26, 15, 59, tzinfo=NY), tz=NY) == lesson
    after_dst = next_occurrence(0, 16 * 60, after=lesson, tz=NY)
    assert after_dst == datetime(2026, 11, 2, 16, 0, tzinfo=NY) and after_dst.utcoffset() == timedelta(hours=-5)
    assert next_occurrence(0, 16 * 60, after=lesson, tz=NY, closures={date(2026, 11, 2)}) == datetime(
        2026, 11, 9, 16, 0, tzinfo=NY
    )
    every_monday = {date(2026, 11, 2) + timedelta(weeks=week) for week in range(60)}
    assert next_occurrence(0, 16 * 60, after=lesson, tz=NY, closures=every_monday) is None


def test_plain_makes_anything_json_safe():
    from models.plain import plain

    class StripeLike(dict):
        def to_dict(self):
            return {"id": "cus_1", "metadata": {}}

    assert plain(StripeLike(id="ignored")) == {"id": "cus_1", "metadata": {}}
    assert plain(
        {
            "when": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
            "at": time(9, 30),
            "amounts": (Decimal("1.50"), date(2026, 1, 2)),
            "n": 3,
        }
    ) == {"when": "2026-01-02T03:04:00+00:00", "at": "09:30:00", "amounts": ["1.50", "2026-01-02"], "n": 3}
