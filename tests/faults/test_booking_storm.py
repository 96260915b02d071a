"""Fault: a booking storm. 200 families, each signed in with a real Supabase token exchanged
for ours, book at the same moment over real HTTP (gunicorn, 2 workers, on PostgreSQL), 10 of
them on each of 20 slots.

Must hold: exactly 20 holds (one per slot, `provisional`), 0 double bookings by SQL, every
other answer a 409 problem+json `slot-taken`, and one booking task queued per hold.
"""

from __future__ import annotations

import random
import uuid

import pytest

from models.db import session_scope
from tests import factories
from tests.faults.conftest import rows, scalar
from tests.support.jwt_tokens import supabase_token
from tests.support.live import Gunicorn, call, concurrently, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

FAMILIES = 200
SLOTS = 20


def _studio() -> tuple[list[int], int, list[tuple[str, str, int]]]:
    """20 slots over two teachers, a plan, 200 families of one student each."""
    with session_scope() as session:
        teachers = [factories.teacher(session, instruments=("piano",)) for _ in range(2)]
        slots = [
            factories.timeslot(
                session, teacher_row=teachers[n % 2], weekday=n % 5, start=f"{15 + n // 10}:{(n // 5 % 2) * 30:02d}"
            )
            for n in range(SLOTS)
        ]
        plan = factories.plan(session)
        families = []
        for n in range(FAMILIES):
            sub, email = f"storm-{n}-{uuid.uuid4().hex[:6]}", f"storm{n}@family.test"
            payee = factories.payee(session, email=email, supabase_user_id=sub)
            families.append((sub, email, factories.student(session, payee_row=payee).id))
        return [slot.id for slot in slots], plan.id, families


def test_200_concurrent_bookings_on_20_slots_make_exactly_20_holds(engine_name, committed_db, private_redis, tmp_path):
    from huey.storage import RedisStorage

    slot_ids, plan_id, families = _studio()
    queue = f"storm-{uuid.uuid4().hex[:8]}"
    env = server_env(
        DATABASE_URL=committed_db,
        REDIS_URL=private_redis.url,
        HUEY_NAME=queue,
        RATELIMIT_AUTH="100000/minute",
        RATELIMIT_BOOKINGS="100000/minute",
        RATELIMIT_PARENT_WRITES="100000/minute",
    )
    with Gunicorn(env, tmp_path / "gunicorn.log", workers=2, threads=8) as server:
        tokens = []
        for sub, email, _ in families:  # the sign-in each app makes: Supabase token → ours
            answer = call(
                "POST", f"{server.url}/auth/exchange", headers={"Authorization": f"Bearer {supabase_token(sub, email)}"}
            )
            assert answer.status == 200, answer
            tokens.append(answer.body["access_token"])
        attempts = [(tokens[n], families[n][2], slot_ids[n % SLOTS]) for n in range(FAMILIES)]
        random.Random(6).shuffle(attempts)

        def booking(token, student_id, slot_id):
            return lambda: (
                slot_id,
                call(
                    "POST",
                    f"{server.url}/parent/bookings",
                    headers={"Authorization": f"Bearer {token}"},
                    body={"student_id": student_id, "timeslot_id": slot_id, "instrument": "piano", "plan": plan_id},
                ),
            )

        results = concurrently([booking(*attempt) for attempt in attempts])
        assert "Traceback" not in server.log()

    assert not [result for result in results if isinstance(result, Exception)], results
    statuses = sorted(answer.status for _, answer in results)
    assert statuses.count(202) == SLOTS and statuses.count(409) == FAMILIES - SLOTS, statuses
    refused = [answer for _, answer in results if answer.status == 409]
    assert {answer.mimetype for answer in refused} == {"application/problem+json"}
    assert {answer.body["type"] for answer in refused} == {"slot-taken"}
    assert all(answer.body["status"] == 409 and answer.body["title"] for answer in refused)
    won = {slot_id: answer.body["id"] for slot_id, answer in results if answer.status == 202}
    assert sorted(won) == sorted(slot_ids)  # one winner per slot

    # The database agrees: 20 live enrollments, one per slot, no slot held twice.
    assert scalar("SELECT count(*) FROM enrollment") == SLOTS
    assert (
        rows(
            "SELECT timeslot_id FROM enrollment WHERE status IN ('provisional', 'active', 'past_due') "
            "GROUP BY timeslot_id HAVING count(*) > 1"
        )
        == []
    )
    held = dict(rows("SELECT timeslot_id, id FROM enrollment WHERE status = 'provisional'"))
    assert held == won
    assert scalar("SELECT count(*) FROM audit_log WHERE action = 'enrollment.hold'") == SLOTS
    # Each hold's booking task was enqueued after its commit, and only those.
    assert RedisStorage(name=queue, url=private_redis.url).queue_size() == SLOTS
