"""Tokens: verifying the Supabase sign-in, minting and checking our own backend token.

Supabase tokens are accepted only with an allow-listed algorithm whose key we hold:
HS256 with `SUPABASE_JWT_SECRET`, RS256/ES256 with a key from `SUPABASE_JWKS_URL`
(looked up by `kid` in `webapi.jwks.KeySet`: a slow or unreachable key set is a quick 503,
an unknown `kid` a quick 401). The algorithm list passed to `jwt.decode` is exactly the one the
key is for, so `none` and an HS256 token "signed" with a public key are refused
(RFC 8725). `exp` and `sub` are required, `aud` must match, and `iss` too when configured.
`sub` (≤ 255 characters) and `email` (an address, ≤ 254) must fit what registering stores,
with no control characters: a token refused here is one that could never sign up.

Our token is HS256 with `JWT_SECRET`, our own issuer and audience, `JWT_TTL_SECONDS` long.
Its `role` is `admin` only for an email on ADMIN_EMAIL_ALLOWLIST that the sign-in vouches
for (`email_verified`), `parent` otherwise.
"""

from __future__ import annotations

import functools
import time
import unicodedata
from dataclasses import dataclass

import jwt
from flask import current_app, g, request

from models.config import ConfigError, Settings
from models.errors import DomainError, Invalid, Unauthorized
from models.people import normalise_email
from webapi.jwks import KeySet, KeySetUnavailable, UnknownKey

OUR_ISSUER = "studio-api"
OUR_AUDIENCE = "studio-parent-api"
OUR_ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 10
# What a sign-in must fit to be registered: payee.supabase_user_id, and an address (RFC 5321).
MAX_SUB_LENGTH = 255
MAX_EMAIL_LENGTH = 254


class AuthUnavailable(DomainError):
    """The identity provider's key set could not be fetched."""

    status = 503
    type = "auth-unavailable"
    title = "Sign-in temporarily unavailable"


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for."""

    sub: str
    email: str
    role: str
    # The identity provider vouches that `email` is the user's (links an admin-made payee).
    email_verified: bool = False


def bearer_token() -> str:
    """The token of `Authorization: Bearer <token>`, or Unauthorized."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an Authorization: Bearer token is required", type="missing-token")
    return token.strip()


class SupabaseVerifier:
    """Checks Supabase access tokens against the configured secret and/or JWKS."""

    def __init__(self, settings: Settings):
        self.secret = settings.SUPABASE_JWT_SECRET
        self.audience = settings.SUPABASE_JWT_AUDIENCE
        self.issuer = settings.SUPABASE_JWT_ISSUER
        self.trust_user_metadata = settings.SUPABASE_TRUST_USER_METADATA
        self.jwks = KeySet(settings.SUPABASE_JWKS_URL) if settings.SUPABASE_JWKS_URL else None

    def _key_for(self, algorithm: str | None, kid: str | None):
        if algorithm == "HS256" and self.secret:
            return self.secret
        if algorithm in ASYMMETRIC_ALGORITHMS and self.jwks is not None:
            try:
                return self.jwks.signing_key(kid).key
            except KeySetUnavailable:
                raise AuthUnavailable("the sign-in key set cannot be fetched; retry later") from None
            except UnknownKey:
                raise Unauthorized("the token's signing key is unknown", type="invalid-token") from None
        raise Unauthorized(f"token algorithm {algorithm!r} is not accepted", type="invalid-token")

    def verify(self, token: str) -> Identity:
        """The identity of a valid Supabase token; Unauthorized for anything else."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is malformed", type="invalid-token") from None
        algorithm = header.get("alg")
        key = self._key_for(algorithm, header.get("kid"))
        required = ["exp", "sub", "aud"] + (["iss"] if self.issuer else [])
        claims = _decode(token, key, algorithm=algorithm, audience=self.audience, issuer=self.issuer, required=required)
        sub = _claim_text(claims["sub"], "subject", MAX_SUB_LENGTH)
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise Unauthorized("the token carries no email address", type="invalid-token")
        try:
            email = normalise_email(_claim_text(email, "email", MAX_EMAIL_LENGTH))
        except Invalid:
            raise Unauthorized("the token's email is not an email address", type="invalid-token") from None
        if len(email) > MAX_EMAIL_LENGTH:  # lower-casing can lengthen some letters
            raise Unauthorized(f"the token's email is longer than {MAX_EMAIL_LENGTH} characters", type="invalid-token")
        verified = _email_verified(claims, trust_user_metadata=self.trust_user_metadata)
        return Identity(sub=sub, email=email, role=_role_for(email, verified=verified), email_verified=verified)


def _email_verified(claims: dict, *, trust_user_metadata: bool) -> bool:
    """Whether the token vouches for its email: `email_verified` true at the top level (a custom
    access-token hook's claim) or in `user_metadata` (Supabase's copy of the identity's; the user
    can edit it, hence SUPABASE_TRUST_USER_METADATA), and not an anonymous user."""
    if claims.get("is_anonymous") is True:
        return False
    if claims.get("email_verified") is True:
        return True
    metadata = claims.get("user_metadata")
    return trust_user_metadata and isinstance(metadata, dict) and metadata.get("email_verified") is True


def _claim_text(value: str, name: str, limit: int) -> str:
    """A text claim we store or show, refused (401) when it could never be: longer than its column
    or holding control, format or unassigned characters (newlines, NUL, bidi overrides)."""
    if len(value) > limit:
        raise Unauthorized(f"the token's {name} is longer than {limit} characters", type="invalid-token")
    if any(unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp") for char in value):
        raise Unauthorized(f"the token's {name} contains control characters", type="invalid-token")
    return value


def _decode(token: str, key, *, algorithm: str, audience: str, issuer: str | None, required: list[str]) -> dict:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            options={"require": required, "verify_iat": True},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired", type="token-expired") from None
    except jwt.PyJWTError as error:
        raise Unauthorized(f"the token is not valid: {error}", type="invalid-token") from None
    except (ValueError, TypeError):  # a key object that does not fit the algorithm
        raise Unauthorized("the token is not valid", type="invalid-token") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"].strip():
        raise Unauthorized("the token has no subject", type="invalid-token")
    return claims


def is_admin_email(email: str) -> bool:
    """Whether `email` is on ADMIN_EMAIL_ALLOWLIST (as the settings hold it now)."""
    return email.strip().lower() in current_app.config["STUDIO_SETTINGS"].admin_emails


def _role_for(email: str, *, verified: bool) -> str:
    # An unverified email is only the user's claim (anyone can sign up with the admin's
    # address): the admin role needs the identity provider to vouch for it.
    return "admin" if verified and is_admin_email(email) else "parent"


def mint_access_token(identity: Identity, settings: Settings, *, now: int | None = None) -> tuple[str, int]:
    """Our backend token for `identity` and its lifetime in seconds."""
    if not settings.JWT_SECRET:
        raise ConfigError("configuration error: JWT_SECRET: required by the API")
    issued = int(now if now is not None else time.time())
    ttl = settings.JWT_TTL_SECONDS
    claims = {
        "sub": identity.sub,
        "email": identity.email,
        "role": identity.role,
        "email_verified": identity.email_verified,
        "iat": issued,
        "exp": issued + ttl,
        "iss": OUR_ISSUER,
        "aud": OUR_AUDIENCE,
    }
    return jwt.encode(claims, settings.JWT_SECRET, algorithm=OUR_ALGORITHM), ttl


def verify_access_token(token: str, settings: Settings) -> Identity:
    """The identity of one of our own valid tokens; Unauthorized otherwise.

    A token verified once is remembered until it expires (its signature, issuer and audience
    cannot change): a family's app sends the same token with every request, and verifying
    it again cost more than the rest of a refused booking. Refused tokens are not remembered.
    """
    identity, expires = _verified(token, settings.JWT_SECRET)
    if time.time() > expires + LEEWAY_SECONDS:
        raise Unauthorized("the token has expired", type="token-expired")
    return identity


@functools.lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> tuple[Identity, int]:
    claims = _decode(
        token,
        secret,
        algorithm=OUR_ALGORITHM,
        audience=OUR_AUDIENCE,
        issuer=OUR_ISSUER,
        required=["exp", "iat", "sub", "iss", "aud", "email", "role"],
    )
    identity = Identity(
        sub=claims["sub"],
        email=str(claims["email"]),
        role=str(claims["role"]),
        email_verified=claims.get("email_verified") is True,  # tokens minted before the claim existed: not verified
    )
    return identity, int(claims["exp"])


def require_identity() -> Identity:
    """Verify the request's bearer token (ours) and remember the identity in `g`."""
    identity = verify_access_token(bearer_token(), current_app.config["STUDIO_SETTINGS"])
    g.identity = identity
    return identity
