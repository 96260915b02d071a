"""`make demo`'s walkthrough, end to end as a subprocess on a fresh SQLite studio: migrated,
seeded, then run twice in the same folder (once as a script from that folder, once as
`python -m demo.walkthrough` from the repository root, as the Makefile does)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow

# The demo makes up its own secrets and servers: nothing of the test process may leak in.
DROPPED = (
    "DATABASE_URL",
    "REDIS_URL",
    "OUTBOX_DIR",
    "EMAIL_BACKEND",
    "HUEY_NAME",
    "JWT_SECRET",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_JWKS_URL",
    "SUPABASE_JWT_ISSUER",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET",
    "MAILJET_API_KEY",
    "MAILJET_API_SECRET",
    "MAILJET_API_URL",
)


def _run(command: list[str], *, cwd, env, timeout: float = 120) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def test_the_demo_books_to_active_and_can_run_again(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in DROPPED}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'studio.db'}"
    python = sys.executable
    _run([python, "-m", "studioctl.main", "db", "upgrade"], cwd=tmp_path, env=env)
    _run([python, "-m", "studioctl.main", "seed", "demo"], cwd=tmp_path, env=env)

    first = _run([python, str(ROOT / "demo" / "walkthrough.py")], cwd=tmp_path, env=env)
    second = _run([python, "-m", "demo.walkthrough"], cwd=ROOT, env=env)

    for output in (first, second):
        for text in ("POST /auth/exchange", "→ provisional", "→ active", "is ACTIVE", "booking_confirmation", "done:"):
            assert text in output, output
    engine = sa.create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        booked = connection.execute(
            sa.text(
                "SELECT e.status, e.stripe_subscription_id, p.stripe_customer_id FROM enrollment e "
                "JOIN student s ON s.id = e.student_id JOIN payee p ON p.id = s.payee_id "
                "WHERE p.email LIKE 'demo-%@example.com' ORDER BY e.id"
            )
        ).all()
        emails = connection.execute(
            sa.text("SELECT status, attempts FROM email_log WHERE template = 'booking_confirmation'")
        ).all()
    engine.dispose()
    assert [row[0] for row in booked] == ["active", "active"]
    assert all(row[1].startswith("sub_") and row[2].startswith("cus_") for row in booked)
    assert len({row[1] for row in booked}) == 2
    assert sorted(emails) == [("sent", 1), ("sent", 1)]
    # The outbox sits beside the database whichever folder the demo ran from.
    assert len(list((tmp_path / "outbox").glob("*-booking_confirmation.eml"))) == 2
