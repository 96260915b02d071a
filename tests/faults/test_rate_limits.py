"""Fault: bursts against the rate-limited routes, on gunicorn (2 workers) with flask-limiter
counting in Redis (a private redis-server).

Must hold: a burst on `/auth/exchange` from one address gets exactly the limit through and
429 problem+json (with Retry-After) for the rest — exact across two worker processes, so
the count lives in Redis, not in a worker's memory; `POST /parent/bookings` is limited per
signed-in family: one family's burst is cut at its limit while another family books freely.
"""

from __future__ import annotations

import pytest

from models.db import session_scope
from tests import factories
from tests.support.jwt_tokens import backend_token, supabase_token
from tests.support.live import Gunicorn, call, concurrently, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

AUTH_LIMIT = 5
BOOKING_LIMIT = 3
BURST = 16


def _assert_limited(answers, allowed: int) -> None:
    limited = [answer for answer in answers if answer.status == 429]
    assert len(answers) - len(limited) == allowed, sorted(answer.status for answer in answers)
    for answer in limited:
        assert answer.mimetype == "application/problem+json", answer
        assert answer.body["status"] == 429 and answer.body["type"] == "too-many-requests", answer.body
        assert "rate limit" in answer.body["detail"]
        assert int(answer.headers["Retry-After"]) > 0


def test_bursts_on_auth_and_bookings_get_429_problems(engine_name, committed_db, private_redis, tmp_path):
    with session_scope() as session:
        slot = factories.timeslot(session, weekday=3, start="16:00")
        other_slot = factories.timeslot(session, weekday=3, start="17:00")
        plan = factories.plan(session)
        families = []
        for n in range(2):
            payee = factories.payee(session, email=f"burst{n}@family.test", supabase_user_id=f"burst-{n}")
            families.append((f"burst-{n}", f"burst{n}@family.test", factories.student(session, payee_row=payee).id))
        slot_id, other_slot_id, plan_id = slot.id, other_slot.id, plan.id

    env = server_env(
        DATABASE_URL=committed_db,
        REDIS_URL=private_redis.url,
        HUEY_NAME="burst",
        RATELIMIT_AUTH=f"{AUTH_LIMIT}/minute",
        RATELIMIT_BOOKINGS=f"{BOOKING_LIMIT}/minute",
    )
    with Gunicorn(env, tmp_path / "gunicorn.log", workers=2, threads=8) as server:
        sub, email, _ = families[0]

        def exchange():
            return call("POST", f"{server.url}/auth/exchange", headers={"Authorization": f"Bearer {supabase_token(sub, email)}"})

        answers = concurrently([exchange] * BURST)
        _assert_limited(answers, AUTH_LIMIT)
        assert all(answer.status == 200 for answer in answers if answer.status != 429)

        def book(family, slot_id):
            token = backend_token(family[0], family[1])
            return lambda: call(
                "POST",
                f"{server.url}/parent/bookings",
                headers={"Authorization": f"Bearer {token}"},
                body={"student_id": family[2], "timeslot_id": slot_id, "instrument": "piano", "plan": plan_id},
            )

        answers = concurrently([book(families[0], slot_id)] * BURST)
        _assert_limited(answers, BOOKING_LIMIT)
        assert sorted(answer.status for answer in answers if answer.status != 429) == [202] + [409] * (BOOKING_LIMIT - 1)
        # Another family is not throttled by the first one's burst (the key is the user).
        assert book(families[1], other_slot_id)().status == 202
        assert "Traceback" not in server.log()

    client = private_redis.client()
    try:
        assert [key for key in client.scan_iter("*studio-api*")], "no rate-limit counters in Redis"
    finally:
        client.close()
