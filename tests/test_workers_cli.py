"""The workers' CLI groups through CliRunner: plans, jobs, emails, dead letters, stripe, worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.billing import record_stripe_event
from models.enrollment import Enrollment
from models.outbox import EmailLog, add_dead_letter, queue_admin_alert
from tests.support.booking import provisional_booking

runner = CliRunner()


def invoke(*args):
    from studioctl.main import app

    return runner.invoke(app, list(args))


@pytest.mark.parametrize("group", ["plans", "emails", "deadletters", "stripe", "jobs"])
def test_every_command_has_help_with_an_example(group):
    import click
    import typer.main

    from studioctl.main import app

    root = typer.main.get_command(app)
    context = click.Context(root)
    command = root.get_command(context, group)
    names = command.list_commands(click.Context(command, parent=context))
    assert names
    for name in names:
        assert "Example:" in (command.get_command(context, name).help or ""), f"{group} {name}"
    assert "Example:" in root.get_command(context, "worker").help


def test_plans_add_creates_the_stripe_product_and_price(session, stripe_env):
    result = invoke("plans", "add", "--frequency", "weekly", "--amount", "30.00", "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    assert view["amount"] == "30.00" and view["stripe_price_id"].startswith("price_")
    price = stripe_env.client().v1.prices.retrieve(view["stripe_price_id"])
    assert price.unit_amount == 3000 and price.recurring.interval == "week" and price.product == view["stripe_product_id"]
    listing = invoke("plans", "list", "--json")
    assert [row["id"] for row in json.loads(listing.output)] == [view["id"]]
    bad = invoke("plans", "add", "--frequency", "yearly", "--amount", "30")
    assert bad.exit_code == 1 and "frequency" in bad.output


def test_jobs_run_and_list(session, task_queue):
    enrollment, _, _, _ = provisional_booking(session)
    enrollment.provisional_expires_at = enrollment.created_at
    session.add(enrollment)
    session.commit()
    result = invoke("jobs", "run", "expire_provisional_holds", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["result"] == {"expired": [enrollment.id]}
    again = invoke("jobs", "run", "expire-provisional-holds", "--json")
    assert json.loads(again.output)["result"] == {"expired": []}
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "expired"
    assert invoke("jobs", "run", "nope").exit_code == 1
    assert "reconcile_stripe" in invoke("jobs", "list", "--json").output


def test_emails_and_dead_letters(session, task_queue):
    [alert] = queue_admin_alert(session, subject="s", message="m", dedupe_key="k")
    alert.status, alert.error = "failed", "boom"
    session.add(alert)
    letter = add_dead_letter(session, kind="send_email", payload={"email_id": alert.id}, error="boom")
    session.commit()
    task_queue.clear()
    listed = json.loads(invoke("emails", "list", "--status", "failed", "--json").output)
    assert [row["id"] for row in listed] == [alert.id]
    assert invoke("deadletters", "retry", str(letter.id)).exit_code == 0
    assert task_queue.pending() == [("send_email", (alert.id,))]
    task_queue.run_all()
    session.expire_all()
    assert session.get(EmailLog, alert.id).status == "sent"
    assert invoke("emails", "retry", str(alert.id)).exit_code == 1  # already sent
    assert invoke("deadletters", "resolve", str(letter.id)).exit_code == 0
    assert invoke("deadletters", "resolve", str(letter.id)).exit_code == 1
    assert json.loads(invoke("deadletters", "list", "--json").output) == []


def test_stripe_events_and_replay(session, stripe_env, task_queue):
    record_stripe_event(session, event_id="evt_cli_1", type="charge.refunded", payload={"data": {"object": {"id": "ch_1"}}})
    session.commit()
    assert "evt_cli_1" in invoke("stripe", "events").output
    result = invoke("stripe", "replay", "evt_cli_1")
    assert result.exit_code == 0 and "ignored" in result.output
    assert invoke("stripe", "replay", "evt_missing").exit_code == 1
    assert json.loads(invoke("stripe", "reconcile", "--json").output) == {"checked": 0, "drift": []}


def test_worker_starts_and_stops_on_sigint(tmp_path):
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}", HUEY_NAME="cli-test", OUTBOX_DIR=str(tmp_path))
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "studioctl.main", "worker", "--no-periodic", "-w", "1"],
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # SIGINT once the consumer is up (its start-up takes seconds on a busy machine), not after a guess.
    started, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        started.append(line)
        if "the following commands are available" in line.lower() or not line:
            break
    time.sleep(1)  # huey sets its signal handlers right after printing that list
    process.send_signal(signal.SIGINT)
    output = "".join(started) + process.communicate(timeout=15)[0].decode()
    assert process.returncode == 0, output
    assert "consumer started" in output.lower() and "Traceback" not in output
