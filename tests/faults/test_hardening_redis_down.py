"""Issue 11, item 6: Redis stops answering under a running API (gunicorn, 2 workers).

Must hold: sign-in, refresh and booking still answer (200 / 202, never a 500): the rate
limits fall back to each worker's memory with a warning (and still limit), the booking's
after-commit enqueue fails, is logged and is left to the recovery jobs; `/healthz` (liveness)
stays 200 while `/readyz` answers 503 problem+json naming Redis; once Redis is back, `/readyz`
is 200 again.
"""

from __future__ import annotations

import pytest

from models.db import session_scope
from models.enrollment import Enrollment
from tests import factories
from tests.support.jwt_tokens import supabase_token
from tests.support.live import Gunicorn, call, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def test_item_06_redis_down_sign_in_and_booking_answer_and_readyz_names_redis(engine_name, committed_db, private_redis, tmp_path):
    with session_scope() as session:
        slot = factories.timeslot(session, weekday=2, start="16:00")
        plan = factories.plan(session)
        payee = factories.payee(session, email="down@family.test", supabase_user_id="down-1")
        student = factories.student(session, payee_row=payee)
        slot_id, plan_id, student_id = slot.id, plan.id, student.id

    env = server_env(DATABASE_URL=committed_db, REDIS_URL=private_redis.url, HUEY_NAME="redis-down", RATELIMIT_AUTH="4/minute")
    with Gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=4) as server:
        supabase = {"Authorization": f"Bearer {supabase_token('down-1', 'down@family.test')}"}
        assert call("GET", f"{server.url}/readyz").status == 200
        private_redis.stop()

        ready = call("GET", f"{server.url}/readyz")
        assert ready.status == 503 and ready.mimetype == "application/problem+json", ready
        assert ready.body["type"] == "not-ready" and "redis" in ready.body["detail"] and "database" not in ready.body["detail"]
        assert ready.body["checks"]["database"] == "ok"
        assert call("GET", f"{server.url}/healthz").status == 200

        exchanged = call("POST", f"{server.url}/auth/exchange", headers=supabase)
        assert exchanged.status == 200, exchanged
        token = exchanged.body["access_token"]
        refreshed = call("POST", f"{server.url}/auth/refresh", headers=supabase)
        assert refreshed.status == 200, refreshed
        # The limit still holds, counted in this worker's memory: 4 a minute, 2 used above.
        statuses = [call("POST", f"{server.url}/auth/exchange", headers=supabase).status for _ in range(3)]
        assert statuses == [200, 200, 429]

        booked = call(
            "POST",
            f"{server.url}/parent/bookings",
            headers={"Authorization": f"Bearer {token}"},
            body={"student_id": student_id, "timeslot_id": slot_id, "instrument": "piano", "plan": plan_id},
        )
        assert booked.status == 202, booked
        with session_scope(write=False) as session:
            assert session.get(Enrollment, booked.body["id"]).status == "provisional"  # held; the recovery jobs enqueue it

        log = server.log()
        assert "falling back to in-memory storage" in log
        assert "after-commit callback failed" in log

        private_redis.start()
        assert call("GET", f"{server.url}/readyz").status == 200
