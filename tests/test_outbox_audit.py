"""Admin writes on the outbox (email retry, dead-letter retry/resolve) leave audit rows."""

import pytest
from sqlmodel import select

from models.audit import AuditLog
from models.db import session_scope
from models.errors import Conflict
from models.outbox import DeadLetter, EmailLog, add_dead_letter, mark_dead_letter_retried, requeue_email, resolve_dead_letter


def test_requeue_and_dead_letter_actions_are_audited(db, session, task_queue):
    with session_scope() as unit:
        email = EmailLog(recipient="p@family.test", template="admin_alert", dedupe_key="k", status="failed", error="400")
        unit.add(email)
        letter = add_dead_letter(unit, kind="send_email", payload={"email_id": 1}, error="400 Bad Request")
        unit.flush()
        email_id, letter_id = email.id, letter.id
    with session_scope() as unit:
        requeue_email(unit, unit.get(EmailLog, email_id))
        mark_dead_letter_retried(unit, unit.get(DeadLetter, letter_id))
        resolve_dead_letter(unit, unit.get(DeadLetter, letter_id))
    with pytest.raises(Conflict):
        with session_scope() as unit:
            resolve_dead_letter(unit, unit.get(DeadLetter, letter_id))
    actions = session.exec(select(AuditLog.action, AuditLog.actor).order_by(AuditLog.id)).all()
    assert actions == [("email.requeue", "admin"), ("dead_letter.retry", "admin"), ("dead_letter.resolve", "admin")]
    assert session.get(EmailLog, email_id).status == "queued"
    assert task_queue.names() == ["send_email"]
