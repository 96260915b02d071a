"""The booking pipeline's units of work read their related rows in one query (`preload`):
the statements are counted, with and without it. Both engines."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.support.booking import provisional_booking


@pytest.fixture
def statements(db):
    """The SELECT / INSERT / UPDATE statements the test's connection runs, as they run."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            seen.append(verb)

    sa.event.listen(db, "before_cursor_execute", record)
    yield seen
    sa.event.remove(db, "before_cursor_execute", record)


def _loaded(session, statements, monkeypatch=None):
    from workers import pipeline

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    payee.stripe_customer_id = "cus_counted"
    session.add(payee)
    session.commit()
    statements.clear()
    booking = pipeline._load(enrollment.id)
    assert booking is not None and booking.customer_id == "cus_counted" and booking.payee_email == payee.email
    return list(statements)


def test_loading_a_booking_reads_its_rows_in_one_query(session, statements):
    # The enrollment under its lock, everything related in one query, the step recorded.
    assert _loaded(session, statements) == ["SELECT", "SELECT", "UPDATE"]


def test_without_the_preload_each_related_row_is_its_own_query(session, statements, monkeypatch):
    from workers import pipeline

    monkeypatch.setattr(pipeline, "preload", lambda *args, **kwargs: None)
    counted = _loaded(session, statements)
    assert counted.count("SELECT") > 2  # the plan, the student and the payee read one by one
