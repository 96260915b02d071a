"""`studioctl doctor`: a healthy stack passes every check (a real consumer's heartbeat, localstripe
holding the plan's Price, the Mailjet stand-in, Redis); each broken part fails its own check,
named, with exit 1: a wrong Stripe key, a database one revision behind, a dead consumer, an
unvalidated Mailjet sender, open dead letters, holds the expiry job left, a failing job."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session

from models.base import utcnow
from models.config import reset_settings
from tests.support.cli import invoke
from tests.support.consumer import consumer_env, wait_for

CHECKS = [
    "settings",
    "database",
    "redis",
    "stripe_key",
    "stripe_webhook_secret",
    "stripe_prices",
    "mailjet",
    "consumer",
    "periodic_jobs",
    "dead_letters",
    "expired_holds",
]
TITLES = {
    "Settings",
    "Database",
    "Redis",
    "Stripe key",
    "Stripe webhook secret",
    "Stripe prices",
    "Mailjet",
    "Consumer",
    "Periodic jobs",
    "Dead letters",
    "Holds past expiry",
}


def _lines(result) -> dict[str, str]:
    """Each check's line by its title ("Stripe key" → "✘ Stripe key: ...")."""
    lines = {}
    for line in result.stdout.splitlines():
        title = line[2:].split(":", 1)[0]
        if title in TITLES:
            lines[title] = line
    assert set(lines) == TITLES, result.stdout
    return lines


def _failed(result) -> list[str]:
    return [title for title, line in _lines(result).items() if line.startswith("✘")]


def _doctor_json() -> dict:
    result = invoke("doctor", "--json")
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["ok"] is (result.exit_code == 0)
    return report


def _workers_running(now=None) -> None:
    """What a live consumer leaves: a fresh heartbeat and a recent run of every periodic job."""
    from models.db import session_scope
    from models.health import record_heartbeat, record_job_run
    from workers.periodic import JOBS

    now = now or utcnow()
    with session_scope() as session:
        record_heartbeat(session, consumer="worker-host:4242", started_at=now - timedelta(hours=2), now=now)
        for name in JOBS:
            record_job_run(session, name=name, started_at=now - timedelta(seconds=5), finished_at=now, error=None)


@pytest.mark.redis
@pytest.mark.slow
def test_a_healthy_stack_passes_every_check(
    engine_name, committed_db, redis_url, stripe_env, mailjet, consumers, tmp_path, monkeypatch
):
    from models.db import session_scope
    from models.health import consumers_seen
    from workers.billing_setup import create_plan
    from workers.stripe_gateway import StripeGateway

    create_plan(StripeGateway(), name="Monthly piano", frequency="monthly", amount_cents=12000, currency="usd", actor="admin")
    monkeypatch.setenv("REDIS_URL", redis_url)
    reset_settings()
    consumer = consumers(
        consumer_env(db_url=committed_db, redis_url=redis_url, stripe_base=stripe_env.base_url, tmp_path=tmp_path)
    )

    def seen():
        with session_scope(write=False) as session:
            return consumers_seen(session)

    wait_for(seen, timeout=30, what="the consumer's heartbeat")

    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    assert all(line.startswith("✔") for line in lines.values()), result.stdout
    assert "test key …udio accepted" in lines["Stripe key"] and "sk_test_studio" not in result.stdout
    assert "1 active plan(s) with their Price present and matching" in lines["Stripe prices"]
    assert "sender studio@example.com validated" in lines["Mailjet"]
    assert "1 alive" in lines["Consumer"] and "answers" in lines["Redis"]
    assert "All 11 checks passed." in result.stdout

    report = _doctor_json()
    assert report["ok"] is True and report["failed"] == []
    assert [check["name"] for check in report["checks"]] == CHECKS
    assert {check["status"] for check in report["checks"]} == {"ok"}
    assert report["checks"][1]["facts"]["revisions"] == report["checks"][1]["facts"]["head"]
    assert "Traceback" not in consumer.log()


def test_a_wrong_stripe_key_fails_the_stripe_check(db, stripe_env, monkeypatch):
    _workers_running()
    publishable = "pk_test_51Hx0123456789abcdefWXYZ"
    monkeypatch.setenv("STRIPE_SECRET_KEY", publishable)
    reset_settings()

    result = invoke("doctor")
    assert result.exit_code == 1, result.output
    assert _failed(result) == ["Stripe key"]
    line = _lines(result)["Stripe key"]
    assert "publishable key …WXYZ refused" in line and "(401)" in line and "secret key (sk_…)" in line
    assert publishable not in result.stdout
    assert "1 of 11 checks failed: Stripe key" in result.stdout
    report = _doctor_json()
    assert report["failed"] == ["stripe_key"]
    assert publishable not in json.dumps(report)


def test_a_database_one_revision_behind_fails_the_database_check(tmp_path, monkeypatch):
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    from migrations import alembic_config, head_revisions
    from models.db import dispose_engines, get_engine
    from tests.support.databases import migrate

    url = f"sqlite:///{tmp_path / 'behind.db'}"
    migrate(url)
    command.downgrade(alembic_config(url), "-1")
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    try:
        with get_engine().connect() as connection:
            [behind] = MigrationContext.configure(connection).get_current_heads()
        result = invoke("doctor")
        assert result.exit_code == 1, result.output
        assert _failed(result) == ["Database"]
        line = _lines(result)["Database"]
        [head] = head_revisions()
        assert f"at revision {behind}, behind the migrations' head ({head})" in line and "studioctl db upgrade" in line
        report = {check["name"]: check for check in _doctor_json()["checks"]}
        assert {name for name, check in report.items() if check["status"] == "skipped"} == {
            "stripe_prices",
            "consumer",
            "periodic_jobs",
            "dead_letters",
            "expired_holds",
        }
        assert report["database"]["facts"]["state"] == "behind"
    finally:
        dispose_engines()


def test_a_dead_consumer_fails_the_consumer_check_and_json_names_it(db):
    from models.db import session_scope
    from models.health import record_job_run
    from workers.periodic import JOBS

    now = utcnow()
    with session_scope() as session:
        for name in JOBS:  # the jobs ran (by hand, say), but no consumer ever beat
            record_job_run(session, name=name, started_at=now, finished_at=now, error=None)
    result = invoke("doctor")
    assert result.exit_code == 1 and _failed(result) == ["Consumer"], result.output
    assert "no consumer seen" in _lines(result)["Consumer"] and "studioctl worker" in _lines(result)["Consumer"]

    _workers_running(now=now - timedelta(minutes=10))  # the last heartbeat is ten minutes old
    result = invoke("doctor")
    assert result.exit_code == 1 and _failed(result) == ["Consumer", "Periodic jobs"], result.output
    assert "last seen 10 min ago (worker-host:4242)" in _lines(result)["Consumer"]

    report = _doctor_json()
    assert report["ok"] is False and report["failed"] == ["consumer", "periodic_jobs"]
    assert [check["name"] for check in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert set(check) - {"facts"} == {"name", "title", "status", "detail", "fix"}
        assert check["status"] in ("ok", "fail", "skipped")
        assert (check["fix"] is not None) is (check["status"] == "fail")
    consumer = report["checks"][CHECKS.index("consumer")]
    assert consumer["facts"]["consumer"] == "worker-host:4242" and consumer["facts"]["alive"] == 0


def test_open_dead_letters_overdue_holds_and_a_failing_job_fail_their_checks(db, session, stripe_env):
    from models.db import session_scope
    from models.health import record_job_run
    from models.outbox import add_dead_letter
    from tests.support.booking import provisional_booking

    _workers_running()
    enrollment, *_ = provisional_booking(session)
    enrollment.provisional_expires_at = utcnow() - timedelta(minutes=10)
    session.add(enrollment)
    session.commit()
    now = utcnow()
    with session_scope() as unit:
        add_dead_letter(unit, kind="send_email", payload={"email_id": 7}, error="Mailjet refused the message")
        record_job_run(unit, name="enforce_dunning", started_at=now, finished_at=now, error="TerminalStripeError: No such key")

    result = invoke("doctor")
    assert result.exit_code == 1, result.output
    assert _failed(result) == ["Periodic jobs", "Dead letters", "Holds past expiry"]
    lines = _lines(result)
    assert "enforce_dunning's last run" in lines["Periodic jobs"] and "No such key" in lines["Periodic jobs"]
    assert "1 open (1 send_email)" in lines["Dead letters"] and "studioctl deadletters list" in lines["Dead letters"]
    assert f"enrollments {enrollment.id};" in lines["Holds past expiry"]
    assert "studioctl jobs run expire_provisional_holds" in lines["Holds past expiry"]
    # The plan has no Price yet: its first booking makes one, nothing is wrong.
    assert lines["Stripe prices"].startswith("✔") and "without a Price yet" in lines["Stripe prices"]


def test_mailjet_credentials_refused_or_a_sender_not_validated_fail_the_mailjet_check(db, mailjet, monkeypatch):
    from tests.support.mailjet_server import sender_row

    _workers_running()
    mailjet.senders = [sender_row("studio@example.com", status="Inactive")]
    result = invoke("doctor")
    assert result.exit_code == 1 and _failed(result) == ["Mailjet"], result.output
    assert "sender studio@example.com is Inactive, not validated" in _lines(result)["Mailjet"]

    mailjet.senders = [sender_row("*@example.com")]  # the whole domain validated
    assert invoke("doctor").exit_code == 0

    monkeypatch.setenv("MAILJET_API_SECRET", "not-the-secret")
    reset_settings()
    result = invoke("doctor")
    assert result.exit_code == 1 and _failed(result) == ["Mailjet"], result.output
    assert "credentials refused" in _lines(result)["Mailjet"] and "not-the-secret" not in result.stdout
    assert [lookup["authorized"] for lookup in mailjet.sender_lookups] == [True, True, False]


def test_run_job_records_each_run_for_the_doctor(db, session: Session):
    from models.health import JobRun
    from workers.periodic import run_job

    run_job("expire_makeup_credits")
    run_job("expire_makeup_credits")
    row = session.get(JobRun, "expire_makeup_credits")
    assert row.runs == 2 and row.last_error is None and row.last_succeeded_at == row.last_finished_at
