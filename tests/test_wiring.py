"""Process wiring: every entry point installs the email dispatcher itself.

Emails are rows queued in a unit of work; whether their send is enqueued after commit must
not depend on what a command happened to import. These run real processes (no autouse
fixture of this test process can help them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, create_engine, select

from tests.support.databases import migrate
from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


def _overdue_enrollment(url: str) -> int:
    """A past_due enrollment whose grace ended ten days ago (billed outside Stripe)."""
    from models.base import utcnow
    from models.enrollment import Enrollment
    from tests import factories

    engine = create_engine(url)
    with Session(engine) as session:
        payee = factories.payee(session)
        student = factories.student(session, payee_row=payee)
        enrollment = Enrollment(
            student_id=student.id,
            timeslot_id=factories.timeslot(session).id,
            instrument_id=factories.instrument(session).id,
            plan_id=factories.plan(session).id,
            status="past_due",
            start_date=utcnow().date(),
            past_due_since=utcnow() - timedelta(days=10),
        )
        session.add(enrollment)
        session.commit()
        enrollment_id = enrollment.id
    engine.dispose()
    return enrollment_id


def test_studioctl_jobs_run_enforce_dunning_enqueues_its_emails(tmp_path):
    from huey import SqliteHuey

    from models.outbox import EmailLog

    database = tmp_path / "studio.db"
    url = f"sqlite:///{database}"
    migrate(url)
    enrollment_id = _overdue_enrollment(url)
    queue = f"wiring-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(DATABASE_URL=url, HUEY_NAME=queue, PYTHONPATH=str(ROOT), OUTBOX_DIR=str(tmp_path / "outbox"))

    result = subprocess.run(
        [sys.executable, "-m", "studioctl.main", "jobs", "run", "enforce_dunning", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(enrollment_id) in result.stdout

    engine = create_engine(url)
    with Session(engine) as session:
        queued = {row.id: row.template for row in session.exec(select(EmailLog)).all()}
    engine.dispose()
    assert "payment_failed" in queued.values() and "admin_alert" in queued.values()
    # Each queued row has its send task in the embedded queue, enqueued by the CLI process itself.
    huey = SqliteHuey(queue, filename=str(tmp_path / "studio-huey.db"))
    messages = [huey.serializer.deserialize(data) for data in huey.storage.enqueued_items()]
    pending = [(message.name.rsplit(".", 1)[-1], tuple(message.args)) for message in messages]
    assert sorted(pending) == sorted(("send_email", (email_id,)) for email_id in queued)


def test_the_consumer_entry_module_knows_every_task_and_periodic_job():
    code = (
        "from workers.consumer import huey; from models import dispatch; "
        "print(sorted(huey._registry._registry)); print(dispatch.email_dispatcher() is not None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    names, wired = result.stdout.strip().splitlines()
    for name in (
        "book_enrollment",
        "send_email",
        "process_stripe_event",
        "periodic_expire_provisional_holds",
        "periodic_reconcile_stripe",
    ):
        assert name in names, (name, result.stderr)
    assert wired == "True"
