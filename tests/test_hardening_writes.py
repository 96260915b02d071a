"""Issue 11, item 8: writes a family can repeat without bound. A family has at most
`MAX_STUDENTS_PER_PAYEE` students (through the API; the admin's CLI is trusted and not capped),
and `POST /parent/payment-setup` hands back the family's open SetupIntent instead of making a
new one per call (Stripe's list is the source of truth: no column of ours)."""

from __future__ import annotations

import itertools
import threading
import uuid

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.config import ConfigError, load_settings
from models.people import Payee, Student
from tests.support.api import assert_problem, make_app, register
from tests.support.cli import ok

_n = itertools.count()


def _students(session, payee_id: int) -> list[str]:
    session.expire_all()
    return session.scalars(sa.select(Student.name).where(Student.payee_id == payee_id).order_by(Student.id)).all()


def _student_audits(session, payee_id: int) -> int:
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(AuditLog)
        .where(AuditLog.actor == f"payee:{payee_id}", AuditLog.action == "student.add")
    )


# Students per family -----------------------------------------------------------------------


def test_item_08_student_cap_is_409_and_writes_nothing(db, session, monkeypatch):
    monkeypatch.delenv("MAX_STUDENTS_PER_PAYEE", raising=False)  # the default: 12
    client = make_app().test_client()
    family = register(client, "user-cap", "cap@family.test")
    ids = [family.add_student(client, f"Kid {n}") for n in range(12)]
    refused = client.post("/parent/students", json={"name": "Thirteen"}, headers=family.headers)
    problem = assert_problem(refused, 409, "too-many-students")
    assert "12" in problem["detail"]
    assert _students(session, family.payee_id) == [f"Kid {n}" for n in range(12)]  # nothing written
    assert _student_audits(session, family.payee_id) == 12
    # Another family is not counted with this one.
    other = register(client, "user-cap2", "cap2@family.test")
    other.add_student(client, "Solo")
    # An archived student makes room (the cap counts the family's current children).
    assert client.delete(f"/parent/students/{ids[0]}", headers=family.headers).status_code == 204
    assert client.post("/parent/students", json={"name": "Thirteen"}, headers=family.headers).status_code == 201
    assert_problem(client.post("/parent/students", json={"name": "Fourteen"}, headers=family.headers), 409, "too-many-students")


def test_item_08_the_student_cap_is_a_validated_setting(monkeypatch):
    assert load_settings().MAX_STUDENTS_PER_PAYEE == 12
    monkeypatch.setenv("MAX_STUDENTS_PER_PAYEE", "3")
    assert load_settings().MAX_STUDENTS_PER_PAYEE == 3
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("MAX_STUDENTS_PER_PAYEE", bad)
        with pytest.raises(ConfigError, match="MAX_STUDENTS_PER_PAYEE"):
            load_settings()


def test_item_08_concurrent_student_adds_stop_at_the_cap(committed_db, monkeypatch):
    """Eight adds at once for a family one short of its cap: one lands, seven are 409 (the count is
    made under the payee's row lock; SQLite: under the write lock of BEGIN IMMEDIATE)."""
    from models.db import session_scope

    monkeypatch.setenv("MAX_STUDENTS_PER_PAYEE", "3")
    app = make_app()
    family = register(app.test_client(), "user-race", "race@family.test")
    family.add_student(app.test_client(), "One")
    family.add_student(app.test_client(), "Two")
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def add(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        status = client.post("/parent/students", json={"name": f"Racer {n}"}, headers=family.headers).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] + [409] * 7
    with session_scope(write=False) as session:
        assert len(_students(session, family.payee_id)) == 3


def test_item_08_the_admin_cli_is_not_capped(session, monkeypatch):
    """The cap guards against a hostile parent; the studio's admin is trusted (a large family,
    a school group) and adds students past it."""
    monkeypatch.setenv("MAX_STUDENTS_PER_PAYEE", "1")
    client = make_app().test_client()
    family = register(client, "user-big", "big@family.test")
    family.add_student(client, "Ada")
    assert_problem(client.post("/parent/students", json={"name": "Bea"}, headers=family.headers), 409, "too-many-students")
    ok("students", "add", "--payee", "big@family.test", "--name", "Bea")
    assert _students(session, family.payee_id) == ["Ada", "Bea"]


# Payment setup -----------------------------------------------------------------------------


def _setup_family(client, session):
    """A parent with an address no earlier test gave its Stripe customer (the customer is found
    by email and payee id in the shared localstripe)."""
    n = next(_n)
    return register(client, f"user-setup-{n}", f"setup-{uuid.uuid4().hex[:10]}@family.test")


def _secret(client, family) -> str:
    response = client.post("/parent/payment-setup", headers=family.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["client_secret"]


def _intent_id(client_secret: str) -> str:
    return client_secret.split("_secret_", 1)[0]


def _customer(session, family) -> str:
    session.expire_all()
    return session.get(Payee, family.payee_id).stripe_customer_id


def _intents_of(stripe_env, customer_id: str) -> dict[str, str]:
    """id → status of every SetupIntent localstripe holds for the customer (filtered here, from
    the unfiltered list, not by the compat layer's filter under test)."""
    listing = stripe_env._request("GET", "/v1/setup_intents?limit=100000")["data"]
    return {intent["id"]: intent["status"] for intent in listing if intent["customer"] == customer_id}


def test_item_08_payment_setup_reuses_the_open_setup_intent(client, session, stripe_env):
    family = _setup_family(client, session)
    first = _secret(client, family)
    assert _secret(client, family) == first  # asked again: the same intent, not a new one
    customer = _customer(session, family)
    assert _intents_of(stripe_env, customer) == {_intent_id(first): "requires_payment_method"}
    # The parent's card is saved (what Stripe.js does): the next setup is a new intent.
    stripe_env.client().v1.setup_intents.confirm(_intent_id(first), {"payment_method": "pm_card_visa"})
    after = _secret(client, family)
    assert after != first
    assert _secret(client, family) == after
    assert _intents_of(stripe_env, customer) == {_intent_id(first): "succeeded", _intent_id(after): "requires_payment_method"}


def test_item_08_payment_setup_reuses_a_declined_or_waiting_intent_only_its_own(client, session, stripe_env):
    family = _setup_family(client, session)
    stripe = stripe_env.client()
    first = _secret(client, family)
    intent_id, customer = _intent_id(first), _customer(session, family)
    # Declined (Stripe leaves it requires_payment_method with last_setup_error): the parent tries another card on it.
    stripe_env._request("POST", f"/_config/compat/setup_intents/{intent_id}/fail", {"message": "Your card was declined."})
    assert _secret(client, family) == first
    # Waiting for the bank's check (3-D Secure at set-up): still the parent's to finish.
    card = stripe.v1.payment_methods.create(
        {"type": "card", "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2031, "cvc": "123"}}
    ).id
    assert stripe.v1.setup_intents.confirm(intent_id, {"payment_method": card}).status == "requires_action"
    assert _secret(client, family) == first
    # Canceled: done with. SetupIntents on the customer that are not ours to hand out (on-session,
    # another payee's metadata, none) are left alone: a new one is made.
    stripe.v1.setup_intents.cancel(intent_id)
    foreign = {
        stripe.v1.setup_intents.create(
            {"customer": customer, "usage": "on_session", "metadata": {"payee_id": str(family.payee_id)}}
        ).id,
        stripe.v1.setup_intents.create({"customer": customer, "metadata": {"payee_id": str(family.payee_id + 1)}}).id,
        stripe.v1.setup_intents.create({"customer": customer}).id,
    }
    fresh = _secret(client, family)
    assert _intent_id(fresh) not in foreign | {intent_id}
    assert _secret(client, family) == fresh
    assert len(_intents_of(stripe_env, customer)) == 5
