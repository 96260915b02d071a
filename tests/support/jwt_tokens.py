"""Mint Supabase-like and backend tokens for tests, and serve a JWKS from 127.0.0.1.

Bad tokens are built by hand where PyJWT (rightly) refuses to make them: `alg: none`
and an HS256 signature keyed with an RSA public key (the algorithm-confusion attack).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.settings import JWT_SECRET, SUPABASE_SECRET

SUPABASE_AUDIENCE = "authenticated"


def supabase_claims(sub: str = "user-1", email: str = "parent@family.test", *, exp_in: int = 3600, **extra) -> dict:
    """Claims shaped like a Supabase access token."""
    now = int(time.time())
    claims = {"sub": sub, "email": email, "aud": SUPABASE_AUDIENCE, "role": "authenticated", "iat": now, "exp": now + exp_in}
    claims.update(extra)
    return {name: value for name, value in claims.items() if value is not None}


def supabase_token(
    sub: str = "user-1",
    email: str = "parent@family.test",
    *,
    secret: str = SUPABASE_SECRET,
    key=None,
    algorithm: str = "HS256",
    kid: str | None = None,
    exp_in: int = 3600,
    **extra,
) -> str:
    """A Supabase token: HS256 with the legacy secret, or RS256/ES256 with `key` (private key)."""
    headers = {"kid": kid} if kid else None
    return jwt.encode(
        supabase_claims(sub, email, exp_in=exp_in, **extra),
        key if key is not None else secret,
        algorithm=algorithm,
        headers=headers,
    )


def backend_token(
    sub: str = "user-1",
    email: str = "parent@family.test",
    *,
    role: str = "parent",
    secret: str = JWT_SECRET,
    exp_in: int = 3600,
    **extra,
) -> str:
    """One of our own tokens, as `/auth/exchange` would mint it (override claims to break it)."""
    from webapi.security import OUR_AUDIENCE, OUR_ISSUER

    now = int(time.time())
    claims = {"sub": sub, "email": email, "role": role, "iat": now, "exp": now + exp_in, "iss": OUR_ISSUER, "aud": OUR_AUDIENCE}
    claims.update(extra)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_token(claims: dict) -> str:
    """`alg: none`, empty signature."""
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def hmac_token(claims: dict, key: bytes, *, kid: str | None = None) -> str:
    """HS256 keyed with arbitrary bytes (e.g. an RSA public key's PEM: algorithm confusion)."""
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tamper(token: str) -> str:
    """The same token with one claim changed and the old signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = claims["sub"] + "-evil"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def rsa_key():
    """A fresh RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(private_key) -> bytes:
    """The PEM of a private key's public half."""
    return private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(private_key, kid: str) -> dict:
    """The public JWK of a key, with `kid`, `alg` and `use`."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        data, alg = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "RS256"
    else:
        data, alg = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "ES256"
    return data | {"kid": kid, "alg": alg, "use": "sig"}


class JWKSServer:
    """A JWKS endpoint on 127.0.0.1 (like Supabase's `/auth/v1/.well-known/jwks.json`).

    `keys` can be changed while it runs (key rotation); `hits` counts fetches.
    """

    def __init__(self, keys: list[dict]):
        self.keys = keys
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.hits += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JWKSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
