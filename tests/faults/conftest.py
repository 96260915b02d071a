"""Shared by the fault tests: a private Redis, a private localstripe, and reading the
committed database (real consumers: the `consumers` fixture of `tests/support/fixtures.py`).

Every server or process a fixture starts is stopped in its finally; all bind 127.0.0.1.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tests.support.fixtures import STRIPE_KEY, WEBHOOK_SECRET, LocalStripe
from tests.support.redis_server import PrivateRedis


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test alone (it may be restarted or stopped); required under CI."""
    import shutil

    from tests.conftest import IN_CI

    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI requires it)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_stripe(tmp_path, monkeypatch):
    """A fresh localstripe (+ compat layer) for this test: every customer and subscription in it
    is this test's, so they can be counted exactly. This process's settings point at it."""
    from models.config import reset_settings
    from tests.support import stripe_server as launcher

    # aiohttp waits for held (delayed) answers on SIGTERM: not for long
    with launcher.running(log_path=str(tmp_path / "localstripe.log"), stop_timeout=1) as base_url:
        monkeypatch.setenv("STRIPE_SECRET_KEY", STRIPE_KEY)
        monkeypatch.setenv("STRIPE_API_BASE", base_url)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        reset_settings()
        yield LocalStripe(base_url)


def read(fn, url: str | None = None):
    """Run `fn(session)` on a fresh session of the committed database (or of `url`)."""
    from models.db import get_engine

    with Session(get_engine(url), expire_on_commit=False) as session:
        return fn(session)


def scalar(sql: str, url: str | None = None, **params):
    """One value of a SQL query on the committed database."""
    return read(lambda session: session.execute(sa.text(sql), params).scalar(), url)


def rows(sql: str, url: str | None = None, **params) -> list:
    return read(lambda session: list(session.execute(sa.text(sql), params).all()), url)


def stripe_list(stripe: LocalStripe, resource: str, **query) -> list[dict]:
    """Every object of a list endpoint of the local Stripe (all pages)."""
    from urllib.parse import urlencode

    items, after = [], None
    while True:
        params = {"limit": 100, **query} | ({"starting_after": after} if after else {})
        page = stripe._request("GET", f"/v1/{resource}?{urlencode(params)}")
        items += page["data"]
        if not page.get("has_more") or not page["data"]:
            return items
        after = page["data"][-1]["id"]


def producer_retry_policy(monkeypatch, *, retries: int, delay: float, backoff: float = 1.0) -> None:
    """Huey's retry policy travels with each message and is the producer's. This test process
    imported workers.app with the default policy (5 retries, 30 s); give the tasks it enqueues
    the short policy the consumer's WORKER_RETRY_* environment gives to the tasks it enqueues."""
    from workers import tasks

    for wrapper in (tasks.book_enrollment, tasks.send_email, tasks.process_stripe_event, tasks.cancel_subscription):
        monkeypatch.setattr(wrapper.task_class, "default_retries", retries)
        monkeypatch.setattr(wrapper.task_class, "default_retry_delay", delay)
        monkeypatch.setattr(wrapper.task_class, "default_retry_backoff", backoff)


@pytest.fixture
def mailjet_stub():
    """A local Mailjet v3.1 server (answers scripted per request; every request recorded)."""
    from tests.support.mailjet_server import MailjetStub

    stub = MailjetStub().start()
    try:
        yield stub
    finally:
        stub.stop()


def mailjet_env(stub) -> dict:
    """Consumer settings that send through `stub`."""
    return {
        "EMAIL_BACKEND": "mailjet",
        "MAILJET_API_KEY": "mj-key",
        "MAILJET_API_SECRET": "mj-secret",
        "MAILJET_API_URL": stub.url,
    }


def storm(stub, answers: list) -> None:
    """Script the next answers of `stub` (500, 429, 503...); later requests succeed."""
    with stub.lock:
        stub.script[:] = list(answers)


def end_storm(stub) -> int:
    """Stop failing now; returns how many requests were answered with a failure."""
    with stub.lock:
        assert stub.script, "the storm ran out before it was ended: count would be wrong"
        stub.script.clear()
        return len(stub.requests)


def accepted_custom_ids(stub, failed: int) -> list[str]:
    """CustomIDs of the messages the stub accepted (every request after the first `failed`)."""
    with stub.lock:
        requests = list(stub.requests[failed:])
    return [message.get("CustomID") for request in requests for message in request["body"].get("Messages", [])]
