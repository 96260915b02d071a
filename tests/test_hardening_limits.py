"""Issue 11, items 6 and 8: the rate limits fail open to memory, /auth/* is one bucket per
client address, and a signed-in parent's writes are limited across routes.

In-process apps; a limit storage that does not answer is a loopback port nothing listens on.
"""

from __future__ import annotations

import socket

import sqlalchemy as sa

from models.people import Student
from tests.support.api import make_app, register
from tests.support.jwt_tokens import supabase_token


def _dead_redis_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # closed again: connections are refused


def test_item_06_limits_fail_open_to_memory_when_redis_does_not_answer(db, caplog):
    client = make_app(RATELIMIT_STORAGE_URI=_dead_redis_url(), RATELIMIT_AUTH="2/minute").test_client()
    headers = {"Authorization": f"Bearer {supabase_token('user-r', 'r@family.test')}"}
    statuses = [client.post("/auth/exchange", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # still limited, counted in this process's memory
    assert "falling back to in-memory storage" in caplog.text


def test_item_08_both_auth_routes_count_in_one_bucket_per_address(db):
    client = make_app(RATELIMIT_AUTH="3/minute").test_client()
    headers = {"Authorization": f"Bearer {supabase_token('user-s', 's@family.test')}"}
    assert client.post("/auth/exchange", headers=headers).status_code == 200
    assert client.post("/auth/refresh", headers=headers).status_code == 200
    assert client.post("/auth/exchange", headers=headers).status_code == 200
    refused = client.post("/auth/refresh", headers=headers)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_item_08_parent_writes_are_limited_per_parent_across_routes(db, session):
    client = make_app(RATELIMIT_PARENT_WRITES="3/minute").test_client()
    first = register(client, "user-w1", "w1@family.test")  # PUT /parent/payee: write 1
    client.post("/parent/students", json={"name": "Ada"}, headers=first.headers)  # 2
    client.post("/parent/students", json={"name": "Bea"}, headers=first.headers)  # 3
    refused = client.post("/parent/students", json={"name": "Cy"}, headers=first.headers)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    names = session.scalars(sa.select(Student.name).where(Student.payee_id == first.payee_id).order_by(Student.id)).all()
    assert names == ["Ada", "Bea"]  # the refused write wrote nothing
    # Another family is not throttled by the first one's writes (the key is the user).
    second = register(client, "user-w2", "w2@family.test")
    assert client.post("/parent/students", json={"name": "Dee"}, headers=second.headers).status_code == 201
    # Reads are not writes.
    assert client.get("/parent/students", headers=first.headers).status_code == 200
    # Every blueprint under /parent/ counts in the same bucket (the waiting list's too).
    assert (
        client.post("/parent/waitlist", json={"student_id": 1, "instrument": "piano"}, headers=first.headers).status_code == 429
    )


def test_item_06_readyz_is_200_naming_each_check_when_all_answer(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["status"] == "ready" and ready.get_json()["checks"]["database"] == "ok"
