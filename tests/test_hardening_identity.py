"""Issue 11, identity and sign-in: linking only a verified email or an admin's invite (2), a
JWKS that is slow or unreachable (7), calendar-token rotation (10), calendar URLs from
PUBLIC_BASE_URL (11), size-checked claims (15)."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
import time_machine

from models.access import PayeeInvite
from models.audit import AuditLog
from models.base import utcnow
from models.config import ConfigError, load_settings
from models.people import Payee
from tests import factories
from tests.support.api import assert_problem, bearer, make_app, register
from tests.support.cli import ok, ok_json, refused, row_counts
from tests.support.jwt_tokens import ec_key, jwk, rsa_key, supabase_token
from webapi.jwks import KeySet, KeySetUnavailable, UnknownKey

# 11. The calendar URL ---------------------------------------------------------------------


def test_item_11_calendar_url_comes_from_public_base_url_not_the_host_header(db, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.studio.example/v1/")
    client = make_app().test_client()
    family = register(client, "user-host", "host@family.test")
    body = client.get("/parent/payee", headers={**family.headers, "Host": "evil.example"}).get_json()
    assert body["calendar_url"].startswith("https://api.studio.example/v1/parent/calendar.ics?token=")
    assert "evil.example" not in body["calendar_url"]


def test_item_11_unset_public_base_url_is_the_local_serve_address(client, family_a):
    body = client.get("/parent/payee", headers={**family_a.headers, "Host": "evil.example"}).get_json()
    assert body["calendar_url"].startswith("http://127.0.0.1:8000/parent/calendar.ics?token=")
    # The URL handed out works.
    assert client.get(body["calendar_url"]).status_code == 200


@pytest.mark.parametrize("value", ["ftp://api.studio.example", "https://api.studio.example/?a=1", "api.studio.example"])
def test_item_11_a_malformed_public_base_url_is_one_config_line(value):
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load_settings(PUBLIC_BASE_URL=value)


def test_item_11_wrong_host_calendar_urls_are_not_in_put_either(client):
    body = client.put("/parent/payee", json={"name": "Hal"}, headers={**bearer("user-h", "h@family.test"), "Host": "x.test"})
    assert body.get_json()["calendar_url"].startswith("http://127.0.0.1:8000/")


# 10. Calendar-token rotation --------------------------------------------------------------


def _calendar_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _audit_rows(session, action: str) -> list[AuditLog]:
    session.expire_all()
    return list(session.scalars(sa.select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def test_item_10_parent_rotates_the_calendar_token_and_the_old_url_is_404(client, session, family_a):
    old_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
    assert client.get(_calendar_path(old_url)).status_code == 200
    rotated = client.post("/parent/calendar-token", headers=family_a.headers)
    assert rotated.status_code == 200
    new_url = rotated.get_json()["calendar_url"]
    assert new_url != old_url and new_url.startswith("http://127.0.0.1:8000/parent/calendar.ics?token=")
    assert_problem(client.get(_calendar_path(old_url)), 404, "not-found")
    assert client.get(_calendar_path(new_url)).status_code == 200
    assert client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"] == new_url
    (row,) = _audit_rows(session, "payee.rotate_calendar_token")
    assert row.actor == f"payee:{family_a.payee_id}" and row.entity_id == str(family_a.payee_id)
    tokens = {parse_qs(urlsplit(url).query)["token"][0] for url in (old_url, new_url)}
    assert row.before["calendar_token"] == row.after["calendar_token"] == "[redacted]"
    assert not any(token in repr((row.before, row.after)) for token in tokens)


def test_item_10_rotation_needs_a_registered_family(client):
    assert_problem(client.post("/parent/calendar-token"), 401)
    assert_problem(client.post("/parent/calendar-token", headers=bearer("new-user", "new@family.test")), 403, "payee-required")


def test_item_10_admin_rotates_a_familys_calendar_token(client, session, family_a):
    old_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
    result = ok("payees", "rotate-calendar-token", family_a.email)
    old_token = parse_qs(urlsplit(old_url).query)["token"][0]
    assert "rotated" in result.stdout and old_token not in result.output
    assert_problem(client.get(_calendar_path(old_url)), 404, "not-found")
    new_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
    assert new_url != old_url and client.get(_calendar_path(new_url)).status_code == 200
    assert new_url.split("token=")[1] not in result.output
    (row,) = _audit_rows(session, "payee.rotate_calendar_token")
    assert row.actor == "admin" and row.after["calendar_token"] == "[redacted]"


def test_item_10_admin_rotation_of_an_unknown_payee_changes_nothing(session, db):
    before = row_counts(session)
    refused("payees", "rotate-calendar-token", "nobody@family.test", message="no payee")
    assert row_counts(session) == before


# 7. A slow or unreachable JWKS ------------------------------------------------------------


class StubJWKS:
    """A JWKS endpoint on 127.0.0.1 that can be slow (`delay` seconds before answering) or
    broken (`status`); `hits` counts the fetches it received."""

    def __init__(self, keys: list[dict], *, delay: float = 0.0, status: int = 200):
        self.keys, self.delay, self.status, self.hits = keys, delay, status, 0
        self.released = threading.Event()  # set at exit: a sleeping answer ends at once
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                stub.hits += 1
                if stub.delay:
                    stub.released.wait(stub.delay)
                body = json.dumps({"keys": stub.keys}).encode()
                try:
                    self.send_response(stub.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"

    def __enter__(self) -> StubJWKS:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _jwks_app(monkeypatch, url: str):
    monkeypatch.setenv("SUPABASE_JWKS_URL", url)
    monkeypatch.delenv("SUPABASE_JWT_SECRET")
    return make_app()


def _exchange_all(app, tokens: list[str], *, within: float) -> list[int]:
    """POST /auth/exchange with every token at once (one thread each); the statuses, or a
    failure when they have not all answered `within` seconds."""
    statuses: list[int] = []

    def exchange(token: str) -> None:
        statuses.append(app.test_client().post("/auth/exchange", headers={"Authorization": f"Bearer {token}"}).status_code)

    threads = [threading.Thread(target=exchange, args=(token,), daemon=True) for token in tokens]
    deadline = time.monotonic() + within
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert len(statuses) == len(tokens), f"{len(tokens) - len(statuses)} of {len(tokens)} sign-ins still waiting after {within} s"
    return statuses


def _random_kid_tokens(key, count: int) -> list[str]:
    return [supabase_token(f"user-{n}", key=key, algorithm="RS256", kid=secrets.token_hex(8)) for n in range(count)]


def test_item_07_a_slow_jwks_is_fetched_once_briefly_then_answered_503_at_once(monkeypatch):
    key = rsa_key()
    with StubJWKS([jwk(key, "rsa-1")], delay=60) as server:
        app = _jwks_app(monkeypatch, server.url)
        started = time.monotonic()
        statuses = _exchange_all(app, _random_kid_tokens(key, 12), within=6)
        assert statuses == [503] * 12
        assert time.monotonic() - started < 6
        assert server.hits == 1
        # Still unreachable: the next sign-in is refused at once, without another fetch.
        started = time.monotonic()
        token = supabase_token(key=key, algorithm="RS256", kid="rsa-1")
        assert_problem(
            app.test_client().post("/auth/exchange", headers={"Authorization": f"Bearer {token}"}), 503, "auth-unavailable"
        )
        assert time.monotonic() - started < 0.5 and server.hits == 1


def test_item_07_random_kids_after_a_fresh_fetch_are_401_without_refetching(monkeypatch):
    key = rsa_key()
    with StubJWKS([jwk(key, "rsa-1")]) as server:
        app = _jwks_app(monkeypatch, server.url)
        assert _exchange_all(app, [supabase_token(key=key, algorithm="RS256", kid="rsa-1")], within=5) == [200]
        assert _exchange_all(app, _random_kid_tokens(key, 30), within=5) == [401] * 30
        assert server.hits == 1


def test_item_07_the_failure_is_remembered_for_the_backoff_then_retried():
    key = rsa_key()
    with StubJWKS([jwk(key, "rsa-1")], status=500) as server:
        keys = KeySet(server.url, failure_backoff=0.3)
        for _ in range(5):
            with pytest.raises(KeySetUnavailable):
                keys.signing_key("rsa-1")
        assert server.hits == 1
        server.status = 200
        time.sleep(0.35)
        assert keys.signing_key("rsa-1").key_id == "rsa-1"
        assert server.hits == 2


def test_item_07_a_rotated_in_key_is_found_after_the_cooldown():
    old, new = rsa_key(), ec_key()
    with StubJWKS([jwk(old, "old")]) as server:
        keys = KeySet(server.url, unknown_kid_cooldown=0.3)
        assert keys.signing_key("old").key_id == "old"
        server.keys = [jwk(old, "old"), jwk(new, "new")]
        with pytest.raises(UnknownKey):
            keys.signing_key("new")  # fetched a moment ago: refused without a fetch
        assert server.hits == 1
        time.sleep(0.35)
        assert keys.signing_key("new").key_id == "new"
        assert server.hits == 2


def test_item_07_held_keys_stay_in_use_while_the_jwks_is_down_and_a_dropped_key_goes():
    first, second = rsa_key(), rsa_key()
    with StubJWKS([jwk(first, "one"), jwk(second, "two")]) as server:
        keys = KeySet(server.url, lifespan=0.2, failure_backoff=0.3)
        assert keys.signing_key("one").key_id == "one"
        server.status = 503
        time.sleep(0.25)
        for _ in range(5):
            assert keys.signing_key("one").key_id == "one"  # stale, refresh failed: still served
        assert server.hits == 2  # one refresh attempt, then the failure is remembered
        server.status, server.keys = 200, [jwk(second, "two")]
        time.sleep(0.35)
        with pytest.raises(UnknownKey):
            keys.signing_key("one")
        assert keys.signing_key("two").key_id == "two" and server.hits == 3


def test_item_07_a_jwks_trickling_its_answer_is_cut_at_the_timeout():
    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        keys = KeySet(f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(KeySetUnavailable):
            keys.signing_key("k")
        assert time.monotonic() - started < 1.5
    finally:
        httpd.shutdown()
        httpd.server_close()


# 2. Linking a sign-in to the payee the studio made ------------------------------------------


def _signed_in(client, sub: str, email: str, **claims) -> dict:
    """Headers with our token for a Supabase sign-in carrying `claims`, through /auth/exchange."""
    response = client.post("/auth/exchange", headers={"Authorization": f"Bearer {supabase_token(sub, email, **claims)}"})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


@pytest.fixture
def studio_family(session):
    """A family the studio made (`studioctl payees add`), with a student, not signed up yet."""
    payee = factories.payee(session, email="sam@family.test", name="Sam Garcia")
    factories.student(session, payee_row=payee, name="Robin")
    session.commit()
    return payee


def _payee_row(session, payee_id: int) -> Payee:
    session.expire_all()
    return session.get(Payee, payee_id)


def test_item_02_unverified_email_does_not_link(client, session, studio_family):
    before = row_counts(session)
    headers = _signed_in(client, "attacker", "sam@family.test")  # no email_verified claim at all
    body = assert_problem(client.put("/parent/payee", json={"name": "Mallory"}, headers=headers), 409, "link-required")
    assert "invite" in body["detail"]
    assert_problem(client.get("/parent/students", headers=headers), 403, "payee-required")
    assert _payee_row(session, studio_family.id).supabase_user_id is None
    assert row_counts(session) == before


@pytest.mark.parametrize(
    "claims",
    [
        {"email_verified": "true"},  # a string is not true
        {"email_verified": True, "is_anonymous": True},
        {"user_metadata": {"email_verified": True}, "is_anonymous": True},
        {"user_metadata": {"email_verified": False}},
        {"app_metadata": {"email_verified": True}},
    ],
    ids=["string-true", "anonymous", "anonymous-metadata", "metadata-false", "app-metadata"],
)
def test_item_02_what_does_not_prove_the_email(client, session, studio_family, claims):
    before = row_counts(session)
    headers = _signed_in(client, "someone", "sam@family.test", **claims)
    assert_problem(client.put("/parent/payee", json={}, headers=headers), 409, "link-required")
    assert row_counts(session) == before


@pytest.mark.parametrize(
    "claims", [{"email_verified": True}, {"user_metadata": {"email_verified": True}}], ids=["top-level", "user-metadata"]
)
def test_item_02_verified_email_links_the_studios_payee(client, session, studio_family, claims):
    headers = _signed_in(client, "sam-sub", "Sam@Family.test", **claims)
    linked = client.put("/parent/payee", json={"phone": "+1 555 0100"}, headers=headers)
    assert linked.status_code == 200, linked.get_json()
    assert linked.get_json()["id"] == studio_family.id
    assert [s["name"] for s in client.get("/parent/students", headers=headers).get_json()["items"]] == ["Robin"]
    assert _payee_row(session, studio_family.id).supabase_user_id == "sam-sub"
    (row,) = _audit_rows(session, "payee.link")
    assert row.actor == f"payee:{studio_family.id}" and row.after["linked_by"] == "verified-email"
    assert row.before["supabase_user_id"] is None and row.after["supabase_user_id"] == "sam-sub"


def test_item_02_user_metadata_is_not_trusted_when_turned_off(monkeypatch, db, session, studio_family):
    monkeypatch.setenv("SUPABASE_TRUST_USER_METADATA", "false")
    client = make_app().test_client()
    headers = _signed_in(client, "sam-sub", "sam@family.test", user_metadata={"email_verified": True})
    assert_problem(client.put("/parent/payee", json={}, headers=headers), 409, "link-required")
    headers = _signed_in(client, "sam-sub", "sam@family.test", email_verified=True)
    assert client.put("/parent/payee", json={}, headers=headers).get_json()["id"] == studio_family.id


def test_item_02_a_new_family_still_signs_up_unverified(client, session):
    headers = _signed_in(client, "new-sub", "new@family.test")
    response = client.put("/parent/payee", json={"name": "Nia"}, headers=headers)
    assert response.status_code == 200 and response.get_json()["email"] == "new@family.test"
    assert [row.action for row in _audit_rows(session, "payee.signup")] == ["payee.signup"]


def test_item_02_unverified_email_changes_do_not_follow_the_sign_in(client, session, family_a):
    headers = _signed_in(client, family_a.sub, "other@family.test")  # same user, a new unverified address
    assert client.put("/parent/payee", json={}, headers=headers).get_json()["email"] == family_a.email
    headers = _signed_in(client, family_a.sub, "other@family.test", email_verified=True)
    assert client.put("/parent/payee", json={}, headers=headers).get_json()["email"] == "other@family.test"


def _invite(email: str) -> str:
    return ok_json("payees", "invite", email)["invite_code"]


def test_item_02_invite_code_links_an_unverified_sign_in_once(client, session, studio_family):
    result = ok("payees", "invite", "sam@family.test")
    code = result.stdout.split(":")[1].split()[0]
    (invite,) = session.scalars(sa.select(PayeeInvite))
    assert invite.code_hash == hashlib.sha256(code.encode()).hexdigest() and code not in repr(invite)
    assert invite.expires_at - invite.created_at == timedelta(days=7)
    (audit,) = _audit_rows(session, "payee.invite")
    assert audit.actor == "admin" and audit.after["code_hash"] == "[redacted]" and audit.after["payee_id"] == studio_family.id
    # The parent signs in with another, unverified address and presents the code.
    headers = _signed_in(client, "sam-sub", "sam.g@elsewhere.test")
    linked = client.put("/parent/payee", json={"invite_code": code}, headers=headers)
    assert linked.status_code == 200, linked.get_json()
    assert linked.get_json()["id"] == studio_family.id and linked.get_json()["email"] == "sam@family.test"
    assert [s["name"] for s in client.get("/parent/students", headers=headers).get_json()["items"]] == ["Robin"]
    (link,) = _audit_rows(session, "payee.link")
    assert link.after["linked_by"] == "invite" and link.after["invite_id"] == invite.id
    # The app retrying the same claim gets the same answer; anyone else finds the code used.
    assert client.put("/parent/payee", json={"invite_code": code}, headers=headers).get_json()["id"] == studio_family.id
    before = row_counts(session)
    other = _signed_in(client, "mallory", "mallory@evil.test")
    assert_problem(client.put("/parent/payee", json={"invite_code": code}, headers=other), 403, "invite-used")
    assert row_counts(session) == before and _payee_row(session, studio_family.id).supabase_user_id == "sam-sub"


def test_item_02_wrong_revoked_and_expired_codes_link_nothing(client, session, studio_family):
    first = _invite("sam@family.test")
    second = _invite("sam@family.test")  # revokes the first
    before = row_counts(session)
    headers = _signed_in(client, "sam-sub", "sam@family.test")
    for code, problem_type in ((first, "invite-invalid"), ("A" * 32, "invite-invalid")):
        assert_problem(client.put("/parent/payee", json={"invite_code": code}, headers=headers), 403, problem_type)
    assert_problem(client.put("/parent/payee", json={"invite_code": "short"}, headers=headers), 422, "validation-error")
    with time_machine.travel(utcnow() + timedelta(days=7, minutes=1)):
        late = _signed_in(client, "sam-sub", "sam@family.test")
        body = assert_problem(client.put("/parent/payee", json={"invite_code": second}, headers=late), 403, "invite-expired")
        assert "expired" in body["detail"]
    assert row_counts(session) == before and _payee_row(session, studio_family.id).supabase_user_id is None
    assert client.put("/parent/payee", json={"invite_code": second}, headers=headers).get_json()["id"] == studio_family.id


def test_item_02_invites_are_refused_for_a_linked_family_or_a_sign_in_with_its_own(client, session, studio_family, family_a):
    before = row_counts(session)
    refused("payees", "invite", family_a.email, message="linked to a sign-in already")
    refused("payees", "invite", "nobody@family.test", message="no payee")
    assert row_counts(session) == before
    code = _invite("sam@family.test")
    before = row_counts(session)
    assert_problem(client.put("/parent/payee", json={"invite_code": code}, headers=family_a.headers), 409, "already-linked")
    assert row_counts(session) == before and _payee_row(session, studio_family.id).supabase_user_id is None


# 15. Claims that could never register -----------------------------------------------------


def _email_of_length(length: int) -> str:
    local = "p" * 64
    return f"{local}@{'d' * (length - len(local) - 1 - len('.test'))}.test"


@pytest.mark.parametrize(
    "sub, email",
    [
        ("u" * 256, "parent@family.test"),
        ("user\n1", "parent@family.test"),
        ("user\x00", "parent@family.test"),
        ("user\u202e1", "parent@family.test"),  # a right-to-left override
        ("user-1", _email_of_length(255)),
        ("user-1", "par\tent@family.test"),
        ("user-1", "parent@family.test\u2028"),
        ("user-1", "parent@localhost"),  # what registering refuses as no address
        ("user-1", "par ent@family.test"),
    ],
    ids=[
        "sub-256",
        "sub-newline",
        "sub-nul",
        "sub-bidi",
        "email-255",
        "email-tab",
        "email-line-separator",
        "email-no-dot",
        "email-space",
    ],
)
def test_item_15_claims_that_could_never_register_are_401_at_exchange(client, sub, email):
    response = client.post("/auth/exchange", headers={"Authorization": f"Bearer {supabase_token(sub, email)}"})
    assert_problem(response, 401, "invalid-token")


def test_item_15_the_longest_accepted_claims_register(client, session):
    sub, email = "u" * 255, _email_of_length(254)
    headers = _signed_in(client, sub, email.upper())
    response = client.put("/parent/payee", json={"name": "Long"}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["email"] == email
    assert _payee_row(session, response.get_json()["id"]).supabase_user_id == sub
    headers = _signed_in(client, "josé-1", "José@Família.test")  # letters beyond ASCII are fine
    assert client.put("/parent/payee", json={}, headers=headers).get_json()["email"] == "josé@família.test"
