"""What one `POST /parent/bookings` asks the database: statements counted per answer. Both engines.

A slot taken before the request is answered from one read (the family, then the facts), with
no lock; a free slot takes the family's lock, then the slot's, reads once under both and inserts.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.people import Payee
from tests.support.api import Studio, booking_body


@pytest.fixture
def statements(db):
    """The SQL statements the test's connection runs (SELECT / INSERT / UPDATE / DELETE)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        words = " ".join(statement.split())
        if words.split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            seen.append(words)

    sa.event.listen(db, "before_cursor_execute", record)
    yield seen
    sa.event.remove(db, "before_cursor_execute", record)


def _locks(statements: list[str]) -> int:
    return sum(1 for statement in statements if statement.endswith("FOR UPDATE"))


def test_a_taken_slot_is_answered_from_one_read_without_a_lock(client, studio: Studio, family_a, family_b, statements):
    taken = family_a.add_student(client)
    assert (
        client.post(
            "/parent/bookings", json=booking_body(taken, studio.slot_id, studio.plan_id), headers=family_a.headers
        ).status_code
        == 202
    )
    student = family_b.add_student(client)
    statements.clear()
    response = client.post(
        "/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family_b.headers
    )
    assert response.status_code == 409 and response.get_json()["type"].endswith("slot-taken")
    assert len(statements) == 2, statements  # the family by its sign-in, then the booking's facts
    assert _locks(statements) == 0


def test_a_free_slot_locks_the_family_then_the_slot_and_inserts_the_hold_and_its_audit(
    client, session, studio: Studio, family_a, statements, engine_name
):
    session.execute(sa.update(Payee).where(Payee.id == family_a.payee_id).values(stripe_payment_method_id="pm_on_file"))
    session.commit()  # a family with a card on file (without one: the card-less holds' lock and count too)
    student = family_a.add_student(client)
    statements.clear()
    response = client.post(
        "/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family_a.headers
    )
    assert response.status_code == 202
    inserts = [statement.split()[2] for statement in statements if statement.startswith("INSERT")]
    assert inserts == ["enrollment", "audit_log"]
    # the family, the facts, no semester today (then none ahead either: every closure), [the
    # family's lock] the slot's lock (SQLite: the slot re-read), the read under the locks, the
    # two inserts
    assert len(statements) == (10 if engine_name == "postgres" else 9), statements
    if engine_name == "postgres":
        locked = [statement.split(" FROM ")[1].split()[0] for statement in statements if statement.endswith("FOR UPDATE")]
        assert locked == ["payee", "timeslot"]  # always this order: no deadlock between two doors
