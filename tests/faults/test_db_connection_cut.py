"""Fault: the PostgreSQL connection dies in the middle of `POST /parent/bookings`.

A TCP proxy between the app and PostgreSQL (tests/support/pg_proxy.py) closes the app's
connection when it sends a chosen statement: the slot INSERT, the audit INSERT (the
enrollment row already written inside the transaction), the idempotency record, or COMMIT.

Must hold: the answer is 503 problem+json with Retry-After; nothing of the transaction is
in the database (no enrollment, audit row or idempotency record) and no booking task was
enqueued; the app recovers by itself — the same request retried with the same
Idempotency-Key makes exactly one hold.
"""

from __future__ import annotations

import pytest

from models.config import reset_settings
from models.db import dispose_engines, session_scope
from tests import factories
from tests.faults.conftest import scalar
from tests.support.api import assert_problem, bearer, booking_body, make_app
from tests.support.pg_proxy import CuttingProxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize(
    "statement", [b"INSERT INTO enrollment", b"INSERT INTO audit_log", b"INSERT INTO idempotency_record", b"COMMIT"]
)
def test_a_connection_cut_mid_booking_is_503_and_writes_nothing(engine_name, committed_db, monkeypatch, task_queue, statement):
    with session_scope() as session:
        payee = factories.payee(session, email="cut@family.test", supabase_user_id="cut-1")
        student = factories.student(session, payee_row=payee)
        slot = factories.timeslot(session, weekday=2, start="16:00")
        plan = factories.plan(session)
        body = booking_body(student.id, slot.id, plan.id)
    headers = bearer("cut-1", "cut@family.test") | {"Idempotency-Key": "booking-cut-1"}
    count = lambda sql: scalar(sql, url=committed_db)  # noqa: E731  (read around the proxy)

    with CuttingProxy() as proxy:
        dispose_engines()
        monkeypatch.setenv("DATABASE_URL", proxy.url_for(committed_db))
        reset_settings()
        client = make_app().test_client()
        proxy.cut_when(statement)
        answer = client.post("/parent/bookings", json=body, headers=headers)
        assert proxy.cuts == 1, f"{statement!r} was never sent"
        problem = assert_problem(answer, 503, "service-unavailable")
        assert answer.headers["Retry-After"] and "database" in problem["detail"]

        assert count("SELECT count(*) FROM enrollment") == 0
        assert count("SELECT count(*) FROM audit_log") == 0
        assert count("SELECT count(*) FROM idempotency_record") == 0
        assert task_queue.pending() == []

        # No restart needed: the dead connection left the pool; the retry gets one hold.
        retried = client.post("/parent/bookings", json=body, headers=headers)
        assert retried.status_code == 202, retried.get_json()
        replayed = client.post("/parent/bookings", json=body, headers=headers)
        assert replayed.status_code == 202 and replayed.headers.get("Idempotent-Replayed") == "true"
        assert replayed.get_json()["id"] == retried.get_json()["id"]
        dispose_engines()

    assert count("SELECT count(*) FROM enrollment WHERE status = 'provisional'") == 1
    assert count("SELECT count(*) FROM audit_log WHERE action = 'enrollment.hold'") == 1
    assert task_queue.names() == ["book_enrollment"]
