"""Auth: Supabase token exchange/refresh, our token on /parent/*, refusals, rate limit, config."""

from __future__ import annotations

import re
import time

import jwt
import pytest

from models.config import ConfigError, reset_settings
from tests.support.api import assert_problem, make_app
from tests.support.jwt_tokens import (
    JWKSServer,
    backend_token,
    ec_key,
    hmac_token,
    jwk,
    public_pem,
    rsa_key,
    supabase_claims,
    supabase_token,
    tamper,
    unsigned_token,
)
from tests.support.settings import JWT_SECRET
from webapi.security import OUR_AUDIENCE, OUR_ISSUER


@pytest.fixture
def client():
    return make_app().test_client()


def _exchange(client, token, path="/auth/exchange"):
    return client.post(path, headers={"Authorization": f"Bearer {token}"})


def _ours(response) -> dict:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 7200
    return jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"], audience=OUR_AUDIENCE, issuer=OUR_ISSUER)


def test_exchange_mints_our_token_with_the_documented_claims(client):
    claims = _ours(_exchange(client, supabase_token("user-1", "Parent@Family.test")))
    assert claims["sub"] == "user-1" and claims["email"] == "parent@family.test" and claims["role"] == "parent"
    assert claims["exp"] - claims["iat"] == 7200


def test_admin_allowlisted_email_gets_the_admin_role_once_verified(client):
    assert _ours(_exchange(client, supabase_token("boss", "admin@studio.test", email_verified=True)))["role"] == "admin"
    assert _ours(_exchange(client, supabase_token("boss", "admin@studio.test")))["role"] == "parent"


def test_refresh_gives_a_fresh_token_while_the_supabase_token_is_valid(client):
    assert _ours(_exchange(client, supabase_token(), "/auth/refresh"))["sub"] == "user-1"
    assert_problem(_exchange(client, supabase_token(exp_in=-60), "/auth/refresh"), 401, "token-expired")


def test_ttl_follows_the_setting(monkeypatch):
    monkeypatch.setenv("JWT_TTL_SECONDS", "600")
    response = _exchange(make_app().test_client(), supabase_token())
    assert response.get_json()["expires_in"] == 600


@pytest.mark.parametrize(
    "make_token, problem_type",
    [
        (lambda: supabase_token(exp_in=-60), "token-expired"),
        (lambda: supabase_token(aud="someone-else"), "invalid-token"),
        (lambda: supabase_token(exp=None), "invalid-token"),
        (lambda: supabase_token(sub=None), "invalid-token"),
        (lambda: supabase_token(secret="another-secret-0123456789abcdef0123456789"), "invalid-token"),
        (lambda: tamper(supabase_token()), "invalid-token"),
        (lambda: unsigned_token(supabase_claims()), "invalid-token"),
        (lambda: supabase_token(key=rsa_key(), algorithm="RS256"), "invalid-token"),  # no JWKS configured
        (lambda: supabase_token(algorithm="HS512"), "invalid-token"),
        (lambda: "not-a-jwt", "invalid-token"),
        (lambda: supabase_token(email=None), "invalid-token"),
    ],
    ids=[
        "expired",
        "wrong-aud",
        "no-exp",
        "no-sub",
        "wrong-secret",
        "tampered",
        "alg-none",
        "rs256-without-jwks",
        "hs512-not-allowed",
        "garbage",
        "no-email",
    ],
)
def test_exchange_refuses_bad_supabase_tokens(client, make_token, problem_type):
    body = assert_problem(_exchange(client, make_token()), 401, problem_type)
    assert body["detail"]


def test_exchange_without_a_token_is_401_with_www_authenticate(client):
    response = client.post("/auth/exchange")
    assert_problem(response, 401, "missing-token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_issuer_is_checked_when_configured(monkeypatch):
    monkeypatch.setenv("SUPABASE_JWT_ISSUER", "https://ref.supabase.co/auth/v1")
    client = make_app().test_client()
    assert_problem(_exchange(client, supabase_token()), 401, "invalid-token")  # no iss at all
    assert_problem(_exchange(client, supabase_token(iss="https://evil.test/auth/v1")), 401, "invalid-token")
    assert _ours(_exchange(client, supabase_token(iss="https://ref.supabase.co/auth/v1")))["sub"] == "user-1"


def test_jwks_with_two_keys_rs256_and_es256(monkeypatch):
    rsa_private, ec_private = rsa_key(), ec_key()
    with JWKSServer([jwk(rsa_private, "rsa-1"), jwk(ec_private, "ec-1")]) as server:
        monkeypatch.setenv("SUPABASE_JWKS_URL", server.url)
        monkeypatch.delenv("SUPABASE_JWT_SECRET")
        client = make_app().test_client()
        assert _ours(_exchange(client, supabase_token("r", key=rsa_private, algorithm="RS256", kid="rsa-1")))["sub"] == "r"
        assert _ours(_exchange(client, supabase_token("e", key=ec_private, algorithm="ES256", kid="ec-1")))["sub"] == "e"
        # A key that is not in the set, and a kid pointing at the other key's type.
        assert_problem(_exchange(client, supabase_token(key=rsa_key(), algorithm="RS256", kid="rsa-1")), 401, "invalid-token")
        assert_problem(_exchange(client, supabase_token(key=rsa_key(), algorithm="RS256", kid="rsa-9")), 401, "invalid-token")
        assert_problem(_exchange(client, supabase_token(key=ec_private, algorithm="ES256", kid="rsa-1")), 401, "invalid-token")
        # Algorithm confusion: HS256 "signed" with the RSA public key, and HS256 at all without a secret.
        confused = hmac_token(supabase_claims(), public_pem(rsa_private), kid="rsa-1")
        assert_problem(_exchange(client, confused), 401, "invalid-token")
        assert_problem(_exchange(client, supabase_token()), 401, "invalid-token")
        assert server.hits >= 1


def test_confusion_is_refused_even_when_both_hs256_and_jwks_are_configured(monkeypatch):
    rsa_private = rsa_key()
    with JWKSServer([jwk(rsa_private, "rsa-1")]) as server:
        monkeypatch.setenv("SUPABASE_JWKS_URL", server.url)
        client = make_app().test_client()
        confused = hmac_token(supabase_claims(), public_pem(rsa_private), kid="rsa-1")
        assert_problem(_exchange(client, confused), 401, "invalid-token")
        assert _ours(_exchange(client, supabase_token()))["sub"] == "user-1"


def test_unreachable_jwks_is_503(monkeypatch):
    monkeypatch.setenv("SUPABASE_JWKS_URL", "http://127.0.0.1:9/jwks.json")
    client = make_app().test_client()
    assert_problem(_exchange(client, supabase_token(key=rsa_key(), algorithm="RS256", kid="k")), 503, "auth-unavailable")


@pytest.mark.parametrize(
    "token",
    [
        lambda: backend_token(exp_in=-60),
        lambda: backend_token(aud="authenticated"),
        lambda: backend_token(iss="https://evil.test"),
        lambda: backend_token(secret="x" * 40),
        lambda: tamper(backend_token()),
        lambda: unsigned_token(
            {
                "sub": "user-1",
                "email": "a@b.test",
                "role": "parent",
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
                "iss": OUR_ISSUER,
                "aud": OUR_AUDIENCE,
            }
        ),
        lambda: supabase_token(),  # a Supabase token is not our token
        lambda: backend_token(exp=None),
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "wrong-secret", "tampered", "alg-none", "supabase-token", "no-exp"],
)
def test_parent_routes_refuse_bad_backend_tokens(client, token):
    response = client.get("/parent/payee", headers={"Authorization": f"Bearer {token()}"})
    assert_problem(response, 401)


def test_every_parent_route_needs_a_token(client):
    app = client.application
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/parent/"):
            continue
        url = re.sub(r"<[^>]+>", "1", rule.rule)  # every id of every route (the waiting list's too)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert_problem(client.open(url, method=method, json={}), 401)


def test_auth_is_rate_limited_with_a_problem():
    client = make_app(RATELIMIT_AUTH="3/minute").test_client()
    statuses = [_exchange(client, supabase_token()).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = _exchange(client, supabase_token())
    assert_problem(response, 429, "too-many-requests")
    assert "Retry-After" in response.headers


def test_missing_jwt_secret_is_a_clear_config_error(monkeypatch):
    from webapi import create_app

    monkeypatch.delenv("JWT_SECRET")
    reset_settings()
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        create_app()


def test_short_jwt_secret_is_a_clear_config_error(monkeypatch):
    from webapi import create_app

    monkeypatch.setenv("JWT_SECRET", "short")
    reset_settings()
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        create_app()


def test_a_token_remembered_as_verified_is_still_refused_once_it_expires(db):
    import time_machine

    from tests.support.api import register
    from tests.support.jwt_tokens import backend_token

    client = make_app().test_client()
    family_a = register(client, "user-m", "m@family.test")
    token = backend_token(family_a.sub, family_a.email, exp_in=60)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/parent/payee", headers=headers).status_code == 200  # verified, remembered
    with time_machine.travel(time.time() + 120, tick=False):
        assert_problem(client.get("/parent/payee", headers=headers), 401, "token-expired")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(client.get("/parent/payee", headers={"Authorization": f"Bearer {tampered}"}), 401)
