"""`/auth/*`: trade a Supabase sign-in for our short-lived backend token.

Both routes read the Supabase access token from `Authorization: Bearer`. `exchange` is the
sign-in; `refresh` is called by the app before our token runs out and succeeds only while
the Supabase token is still valid, so a revoked or expired sign-in stops getting tokens.
Neither touches the database (the payee record is made by `PUT /parent/payee`).
"""

from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from webapi.schemas import Problem, TokenOut
from webapi.security import bearer_token, mint_access_token

tag = Tag(name="auth", description="Exchange a Supabase access token for the API's own token")
bp = APIBlueprint(
    "auth",
    __name__,
    url_prefix="/auth",
    abp_tags=[tag],
    abp_security=[{"supabase": []}],
    abp_responses={401: Problem, 429: Problem, 503: Problem},
)


def _issue() -> dict:
    settings = current_app.config["STUDIO_SETTINGS"]
    identity = current_app.extensions["studio_supabase"].verify(bearer_token())
    token, ttl = mint_access_token(identity, settings)
    return TokenOut(access_token=token, expires_in=ttl).model_dump()


@bp.post("/exchange", responses={200: TokenOut})
def exchange():
    """Sign in: a valid Supabase access token in `Authorization: Bearer` buys our token."""
    return _issue()


@bp.post("/refresh", responses={200: TokenOut})
def refresh():
    """A fresh backend token, granted only while the Supabase token is still valid."""
    return _issue()
