"""The admin's writes behind `studioctl stripe replay`, `deadletters retry` and `seed demo`:
audited domain operations, and dead letters keyed by the task objects (`workers.tasks.RETRYABLE`)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from sqlmodel import select

from models.audit import AuditLog
from models.billing import StripeEvent, finish_stripe_event, record_stripe_event
from models.errors import NotFound
from models.outbox import DeadLetter, add_dead_letter, queue_admin_alert
from tests.support.cli import audit_actions, invoke, ok, refused, row_counts
from workers import tasks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _db(db):
    return db


def _stored_event(session, *, event_id="evt_admin_1", type="product.created", status="failed") -> StripeEvent:
    event = record_stripe_event(session, event_id=event_id, type=type, payload={"data": {"object": {"id": "prod_1"}}})
    finish_stripe_event(session, event, status=status, error="boom" if status == "failed" else None)
    session.commit()
    return event


def _audit_rows(session, action: str) -> list[AuditLog]:
    session.expire_all()
    return list(session.exec(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).all())


# Stripe events -------------------------------------------------------------------------


def test_reopening_a_stripe_event_is_audited(session):
    from models.db import session_scope
    from models.stripe_records import reopen_stripe_event

    event = _stored_event(session, status="processed")
    with session_scope() as unit:
        reopen_stripe_event(unit, ref="evt_admin_1", actor="admin")
    session.refresh(event)
    assert event.status == "received"
    [audit] = _audit_rows(session, "stripe_event.reopen")
    assert (audit.actor, audit.entity, audit.entity_id) == ("admin", "stripe_event", str(event.id))
    assert (audit.before["status"], audit.after["status"]) == ("processed", "received")
    with pytest.raises(NotFound), session_scope() as unit:
        reopen_stripe_event(unit, ref="evt_missing", actor="admin")


def test_stripe_replay_reopens_through_the_audited_operation(session):
    event = _stored_event(session)
    result = ok("stripe", "replay", "evt_admin_1")
    assert "ignored" in result.stdout  # no handler for product.created: processed again, nothing to do
    session.refresh(event)
    assert (event.status, event.attempts) == ("ignored", 2)
    assert audit_actions(session) == [("admin", "stripe_event.reopen")]
    before = row_counts(session)
    refused("stripe", "replay", "evt_missing", message="no Stripe event 'evt_missing'")
    assert row_counts(session) == before


# Dead letters: one table keyed by the tasks ----------------------------------------------


def test_retryable_is_keyed_by_the_task_objects():
    wrappers = (
        tasks.book_enrollment,
        tasks.cancel_subscription,
        tasks.undo_orphan_charges,
        tasks.send_email,
        tasks.process_stripe_event,
        tasks.move_subscription,
        tasks.send_sms,
        tasks.offer_freed_slot,
        tasks.rebalance_sibling_discounts,
        tasks.apply_time_off,
    )
    assert set(tasks.RETRYABLE) == {tasks.task_name(task) for task in wrappers}
    for name, entry in tasks.RETRYABLE.items():
        assert entry.task in wrappers and entry.name == name
        assert entry.task.s(1).name == name  # what SIGNAL_ERROR's task carries
        assert entry.final or entry.queued


def _dead_letter_kinds_written() -> set[str]:
    """Every literal `kind=` given to `add_dead_letter` under workers/ and models/."""
    kinds = set()
    for path in [*ROOT.glob("workers/*.py"), *ROOT.glob("models/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "add_dead_letter":
                for keyword in node.keywords:
                    if keyword.arg == "kind" and isinstance(keyword.value, ast.Constant):
                        kinds.add(keyword.value.value)
    return kinds


def test_every_dead_letter_written_names_a_retryable_task():
    from workers.pipeline import fail_booking

    kinds = _dead_letter_kinds_written() | {inspect.signature(fail_booking).parameters["kind"].default}
    assert kinds and kinds <= set(tasks.RETRYABLE)


def test_the_final_failure_signal_dispatches_through_the_table(monkeypatch):
    seen = []
    for name, entry in tasks.RETRYABLE.items():
        handler = lambda argument, error, name=name: seen.append((name, argument, error))  # noqa: E731
        monkeypatch.setitem(tasks.RETRYABLE, name, dataclasses.replace(entry, on_final_failure=handler))
    for number, entry in enumerate(tasks.RETRYABLE.values(), start=1):
        task = entry.task.s(number)
        task.retries = 1
        tasks.record_final_failure("error", task, RuntimeError("still down"))  # not the last attempt
        task.retries = 0
        tasks.record_final_failure("error", task, RuntimeError("gone"))
    assert seen == [(name, number, "RuntimeError: gone") for number, name in enumerate(tasks.RETRYABLE, start=1)]


def test_a_cancellation_failed_for_good_is_replayed_by_its_task(session, task_queue):
    task = tasks.cancel_subscription.s(4242)
    task.retries = 0
    tasks.record_final_failure("error", task, RuntimeError("Stripe down"))
    [letter] = session.exec(select(DeadLetter)).all()
    assert (letter.kind, letter.payload) == ("cancel_subscription", {"enrollment_id": 4242})
    task_queue.clear()
    result = ok("deadletters", "retry", letter.id)
    assert "cancellation of enrollment 4242's subscription queued again" in result.stdout
    assert task_queue.pending() == [("cancel_subscription", (4242,))]
    session.refresh(letter)
    assert letter.retried_at is not None and letter.resolved_at is None
    assert audit_actions(session) == [("admin", "dead_letter.retry")]


def test_a_failed_stripe_event_is_replayed_through_the_audited_reopen(session, task_queue):
    event = _stored_event(session)
    letter = add_dead_letter(
        session, kind=tasks.task_name(tasks.process_stripe_event), payload={"event_id": event.id}, error="boom"
    )
    session.commit()
    result = ok("deadletters", "retry", letter.id)
    assert f"Stripe event {event.id} queued again" in result.stdout
    assert task_queue.pending() == [("process_stripe_event", (event.id,))]
    session.refresh(event)
    assert event.status == "received"
    assert audit_actions(session) == [("admin", "stripe_event.reopen"), ("admin", "dead_letter.retry")]


def test_a_failed_email_is_requeued_with_audit_rows(session, task_queue):
    [alert] = queue_admin_alert(session, subject="s", message="m", dedupe_key="k")
    alert.status, alert.error = "failed", "boom"
    session.add(alert)
    letter = add_dead_letter(session, kind=tasks.task_name(tasks.send_email), payload={"email_id": alert.id}, error="boom")
    session.commit()
    task_queue.clear()
    assert f"email {alert.id} queued again" in ok("deadletters", "retry", letter.id).stdout
    assert task_queue.pending() == [("send_email", (alert.id,))]  # enqueued once, after the commit
    session.refresh(alert)
    assert alert.status == "queued"
    assert audit_actions(session) == [("admin", "email.requeue"), ("admin", "dead_letter.retry")]


@pytest.mark.parametrize(
    "kind, message",
    [("book_enrollment", "a failed booking is final"), ("shred_invoices", "no replay for dead letters of kind 'shred_invoices'")],
)
def test_a_dead_letter_without_replay_is_refused_and_nothing_changes(session, task_queue, kind, message):
    letter = add_dead_letter(session, kind=kind, payload={"enrollment_id": 1}, error="card declined")
    session.commit()
    before = row_counts(session)
    refused("deadletters", "retry", letter.id, message=message)
    assert row_counts(session) == before and audit_actions(session) == [] and task_queue.pending() == []
    session.refresh(letter)
    assert letter.retried_at is None
    refused("deadletters", "retry", 999_999, message="no dead letter 999999")


def test_dead_letter_and_email_read_models_are_plain_rows(session):
    letter = add_dead_letter(session, kind="send_email", payload={"email_id": 7}, error="boom")
    session.commit()
    listed = invoke("deadletters", "list", "--json")
    assert listed.exit_code == 0 and '"email_id": 7' in listed.stdout
    from models.outbox import dead_letter_row, list_dead_letters, list_emails

    assert dead_letter_row(session, letter_id=letter.id) == list_dead_letters(session)[0]
    assert list_dead_letters(session)[0]["payload"] == {"email_id": 7}
    [alert] = queue_admin_alert(session, subject="s", message="m", dedupe_key="k")
    assert [row["id"] for row in list_emails(session, status="queued")] == [alert.id]
    assert list_emails(session, status="failed") == [] and list_emails(session, limit=0) == []


# The demo seed ---------------------------------------------------------------------------


def test_the_demo_seed_audits_every_row_it_makes(session):
    from models.base import utcnow
    from models.config import get_settings
    from models.db import session_scope
    from models.seed import seed_demo_studio
    from models.tables import TABLES

    steps = []
    with session_scope() as unit:
        made = seed_demo_studio(
            unit, today=utcnow().astimezone(get_settings().tz).date(), seed=7, actor="admin", advance=lambda: steps.append(1)
        )
    assert len(steps) == 6 and made["teachers"] == 4 and made["students"] == 30
    session.expire_all()
    audited = {(row.entity, row.entity_id) for row in session.exec(select(AuditLog).where(AuditLog.actor == "admin")).all()}
    for name, model in TABLES.items():
        if name in ("audit_log", "email_log") or "id" not in model.__table__.columns:
            continue  # emails are outbox rows; teacher_instrument is in its teacher's audit row
        ids = {str(row_id) for row_id in session.exec(select(model.id)).all()}
        assert ids <= {entity_id for entity, entity_id in audited if entity == name}, name
    assert {"teacher", "timeslot", "semester", "plan", "payee", "student", "enrollment"} <= {entity for entity, _ in audited}
