"""Real HTTP, real commits: 30 families race for one slot on PostgreSQL; one wins."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from models.db import session_scope
from models.enrollment import Enrollment
from tests import factories
from tests.support.api import bearer, make_app

THREADS = 30


@pytest.fixture
def live_server(committed_db):
    """The API on 127.0.0.1 in a threaded werkzeug server (one thread per request)."""
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.postgres
@pytest.mark.slow
def test_thirty_threads_one_slot_exactly_one_hold(live_server, engine_name):
    with session_scope() as session:
        teacher = factories.teacher(session, instruments=("piano",))
        slot = factories.timeslot(session, teacher_row=teacher, weekday=1, start="15:00")
        plan = factories.plan(session)
        families = []
        for n in range(THREADS):
            payee = factories.payee(session, email=f"racer{n}@family.test", supabase_user_id=f"racer-{n}")
            student = factories.student(session, payee_row=payee)
            families.append((bearer(f"racer-{n}", f"racer{n}@family.test"), student.id))
        slot_id, plan_id = slot.id, plan.id

    barrier = threading.Barrier(THREADS)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def book(headers: dict, student_id: int) -> None:
        barrier.wait()
        outcome = _post(
            f"{live_server}/parent/bookings",
            {"student_id": student_id, "timeslot_id": slot_id, "instrument": "piano", "plan": plan_id},
            headers,
        )
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=book, args=family) for family in families]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = sorted(status for status, _ in results)
    assert statuses.count(202) == 1, statuses
    assert statuses.count(409) == THREADS - 1, statuses
    assert {body["type"] for status, body in results if status == 409} == {"slot-taken"}
    with session_scope(write=False) as session:
        rows = session.exec(sa.select(Enrollment.id, Enrollment.status).where(Enrollment.timeslot_id == slot_id)).all()
    assert len(rows) == 1 and rows[0][1] == "provisional"
    winner = next(body for status, body in results if status == 202)
    assert winner["id"] == rows[0][0]


@pytest.mark.postgres
@pytest.mark.slow
def test_thirty_threads_booking_a_slot_that_frees_next_month_exactly_one_hold(live_server, engine_name):
    """A slot held until next month is available from then (issue 13): the 30 families race for
    those dates, with no start date; one holds it from the first lesson after the current
    booking's end, the others are told it is taken, and the current booking is untouched."""
    from datetime import timedelta

    from models.clock import studio_today

    today = studio_today()
    ends = today + timedelta(days=30)
    with session_scope() as session:
        teacher = factories.teacher(session, instruments=("piano",))
        slot = factories.timeslot(session, teacher_row=teacher, weekday=today.weekday(), start="15:00")
        plan = factories.plan(session)
        current = Enrollment(
            student_id=factories.student(session).id,
            timeslot_id=slot.id,
            instrument_id=factories.instrument(session).id,
            status="active",
            offline=True,
            start_date=today - timedelta(days=56),
            end_date=ends,
        )
        session.add(current)
        families = []
        for n in range(THREADS):
            payee = factories.payee(session, email=f"later{n}@family.test", supabase_user_id=f"later-{n}")
            student = factories.student(session, payee_row=payee)
            families.append((bearer(f"later-{n}", f"later{n}@family.test"), student.id))
        session.flush()
        slot_id, plan_id, current_id = slot.id, plan.id, current.id

    barrier = threading.Barrier(THREADS)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def book(headers: dict, student_id: int) -> None:
        barrier.wait()
        outcome = _post(
            f"{live_server}/parent/bookings",
            {"student_id": student_id, "timeslot_id": slot_id, "instrument": "piano", "plan": plan_id},
            headers,
        )
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=book, args=family) for family in families]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = sorted(status for status, _ in results)
    assert statuses.count(202) == 1, statuses
    assert statuses.count(409) == THREADS - 1, statuses
    assert {body["type"] for status, body in results if status == 409} == {"slot-taken"}
    with session_scope(write=False) as session:
        rows = session.exec(
            sa.select(Enrollment.id, Enrollment.status, Enrollment.start_date, Enrollment.end_date)
            .where(Enrollment.timeslot_id == slot_id)
            .order_by(Enrollment.id)
        ).all()
    winner = next(body for status, body in results if status == 202)
    assert [tuple(row) for row in rows] == [
        (current_id, "active", today - timedelta(days=56), ends),
        (winner["id"], "provisional", ends + timedelta(days=(today.weekday() - ends.weekday() - 1) % 7 + 1), None),
    ]
