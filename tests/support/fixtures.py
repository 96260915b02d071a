"""Fixtures for the workers' tests: a local Stripe, a local Mailjet, settings pointing at them,
real consumers. A plugin of `tests/conftest.py` (`pytest_plugins`): no test module imports them."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.support import stripe_server as stripe_launcher
from tests.support.consumer import Consumer

WEBHOOK_SECRET = "whsec_test_secret_0123456789"
STRIPE_KEY = "sk_test_studio"


class LocalStripe:
    """A running localstripe (+ compat layer) and helpers to look inside it."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def _request(self, method: str, path: str, data: dict | None = None):
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {STRIPE_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def client(self):
        import stripe

        return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.base_url}, max_network_retries=0)

    def subscriptions(self, customer: str) -> list[dict]:
        return self._request("GET", f"/v1/subscriptions?customer={customer}&status=all")["data"]

    def fault(
        self,
        path_prefix: str,
        *,
        method: str = "POST",
        fail_times: int = 0,
        delay_after: float = 0,
        status: int = 500,
        type: str = "api_error",
        after_handler: bool = False,
        remember: bool = False,
        should_retry: bool | None = None,
    ):
        self._request(
            "POST",
            "/_config/compat/faults",
            {
                "path_prefix": path_prefix,
                "method": method,
                "type": type,
                "fail_times": fail_times,
                "delay_after": delay_after,
                "status": status,
                "after_handler": after_handler,
                "remember": remember,
                "should_retry": should_retry,
            },
        )

    def clear_faults(self):
        self._request("DELETE", "/_config/compat/faults")

    def post_counts(self) -> dict:
        return self._request("GET", "/_config/compat/requests")


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory):
    """localstripe with our compat layer on a free loopback port (one per test session)."""
    log = tmp_path_factory.mktemp("stripe") / "localstripe.log"
    with stripe_launcher.running(log_path=str(log)) as base_url:
        yield LocalStripe(base_url)


@pytest.fixture
def stripe_env(stripe_server, monkeypatch):
    """Settings pointing the Stripe gateway at the local server."""
    from models.config import reset_settings

    monkeypatch.setenv("STRIPE_SECRET_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_server.base_url)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    reset_settings()
    yield stripe_server
    stripe_server.clear_faults()
    reset_settings()


@pytest.fixture
def mailjet(monkeypatch):
    """A local Mailjet v3.1 server; the settings use the mailjet backend against it."""
    from models.config import reset_settings
    from tests.support.mailjet_server import MailjetStub

    stub = MailjetStub().start()
    monkeypatch.setenv("EMAIL_BACKEND", "mailjet")
    monkeypatch.setenv("MAILJET_API_KEY", "mj-key")
    monkeypatch.setenv("MAILJET_API_SECRET", "mj-secret")
    monkeypatch.setenv("MAILJET_API_URL", stub.url)
    reset_settings()
    yield stub
    stub.stop()
    reset_settings()


@pytest.fixture
def consumers(tmp_path):
    """`consumers(env)` starts a real huey_consumer (log: tmp_path/consumer.log); all are stopped at the end."""
    started: list[Consumer] = []

    def start(env: dict) -> Consumer:
        consumer = Consumer(env, tmp_path / "consumer.log")
        started.append(consumer)
        return consumer.start()

    try:
        yield start
    finally:
        for consumer in started:
            consumer.stop()
