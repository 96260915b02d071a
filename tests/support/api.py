"""Fixtures and helpers shared by the API tests. The fixtures are a plugin of `tests/conftest.py`
(`pytest_plugins`): test modules use them without importing them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests import factories
from tests.support.jwt_tokens import backend_token

RELAXED_LIMITS = {
    "TESTING": True,
    "RATELIMIT_AUTH": "10000/minute",
    "RATELIMIT_BOOKINGS": "10000/minute",
    "RATELIMIT_PARENT_WRITES": "10000/minute",
}


def make_app(**config):
    """A fresh app (fresh rate-limit memory) with the test environment's settings."""
    from models.config import reset_settings
    from webapi import create_app

    reset_settings()
    return create_app({**RELAXED_LIMITS, **config})


def bearer(sub: str, email: str) -> dict:
    """Authorization headers carrying our token for a user."""
    return {"Authorization": f"Bearer {backend_token(sub, email)}"}


@dataclass
class Family:
    """A signed-in parent with a payee record (and the headers to act as them)."""

    sub: str
    email: str
    headers: dict
    payee_id: int

    def add_student(self, client, name: str = "Ada") -> int:
        response = client.post("/parent/students", json={"name": name}, headers=self.headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]


def register(client, sub: str, email: str, name: str = "Parent") -> Family:
    """Sign a parent up through `PUT /parent/payee`."""
    headers = bearer(sub, email)
    response = client.put("/parent/payee", json={"name": name}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return Family(sub=sub, email=email, headers=headers, payee_id=response.get_json()["id"])


@pytest.fixture
def app(db):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def family_a(client):
    return register(client, "user-a", "a@family.test", "Alice")


@pytest.fixture
def family_b(client):
    return register(client, "user-b", "b@family.test", "Bob")


@dataclass
class Studio:
    teacher_id: int
    slot_id: int
    other_slot_ids: list[int]
    plan_id: int


@pytest.fixture
def studio(session):
    """A piano teacher with four Monday slots (16:00…17:30) and a monthly plan."""
    teacher = factories.teacher(session, instruments=("piano",))
    slots = [
        factories.timeslot(session, teacher_row=teacher, weekday=0, start=start) for start in ("16:00", "16:30", "17:00", "17:30")
    ]
    plan = factories.plan(session)
    session.commit()
    return Studio(teacher_id=teacher.id, slot_id=slots[0].id, other_slot_ids=[slot.id for slot in slots[1:]], plan_id=plan.id)


def booking_body(student_id: int, slot_id: int, plan_id: int, **extra) -> dict:
    return {"student_id": student_id, "timeslot_id": slot_id, "instrument": "piano", "plan": plan_id, **extra}


def assert_problem(response, status: int, type_: str | None = None) -> dict:
    """The response is problem+json with `status` (and `type`)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json", response.mimetype
    body = response.get_json()
    assert body["status"] == status and body["title"]
    if type_ is not None:
        assert body["type"] == type_, body
    return body
