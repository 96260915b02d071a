"""The parent REST API: `create_app()` builds the Flask app (flask-openapi3, spec from code).

Blueprints: `auth` (token exchange), `public` (discovery), `parent` (the family's own
data; our bearer token), `admin` (read-only studio data; our token with the admin role),
`health`, and Stripe's `webhooks` (no auth, no CORS, no rate limit there: Stripe signs
its calls).

Rate limits: `webapi/rate_limits.py` (the limit strings come from the `RATELIMIT_*`
settings and can be overridden in `test_config`). CORS answers only the origins of
`CORS_ORIGINS`.
"""

from __future__ import annotations

import logging

from flask import request
from flask_cors import CORS
from flask_openapi3 import Info, OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix

from models.config import ConfigError, Settings, get_settings
from webapi import (
    admin,
    auth,
    observability,
    parent,
    parent_bookings,
    parent_lessons,
    public,
    rate_limits,
    request_limits,
    response_headers,
    waitlist,
    webhooks,
)
from webapi.openapi_doc import StudioOpenAPI
from webapi.problems import flask_openapi3_validation_callback, register_error_handlers
from webapi.security import SupabaseVerifier

# The modules whose routes are on `parent.bp` (endpoints `parent.<view>`): importing them adds
# the routes, so they exist before `create_app` registers the blueprint.
PARENT_ROUTES = (parent, parent_bookings, parent_lessons)

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the API's own token from POST /auth/exchange",
    },
    "supabase": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a Supabase access token (only for /auth/*)",
    },
    "adminBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the API's own token from POST /auth/exchange with the admin role (a verified email on "
        "ADMIN_EMAIL_ALLOWLIST); only for /admin/*",
    },
    "calendarToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the family's calendar subscription token",
    },
}
API_PREFIXES = r"/(auth|public|parent|admin|healthz|readyz)(/.*)?"


def _check_settings(settings: Settings) -> None:
    if not settings.JWT_SECRET:
        raise ConfigError("configuration error: JWT_SECRET: required by the API (at least 32 characters)")
    if not (settings.SUPABASE_JWT_SECRET or settings.SUPABASE_JWKS_URL):
        raise ConfigError("configuration error: SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL: one is required by the API")
    if not settings.PUBLIC_BASE_URL:
        logging.getLogger(__name__).warning(
            "PUBLIC_BASE_URL is unset: calendar URLs point at %s (set it to the API's public address)", settings.public_base_url
        )


def create_app(test_config: dict | None = None) -> OpenAPI:
    """Build the API. Settings are validated here: a missing JWT_SECRET is a ConfigError."""
    settings = get_settings()
    _check_settings(settings)
    # Emails queued by a request (make-up confirmations...) are sent by a task enqueued after commit.
    from workers import wiring

    wiring.install()

    app = StudioOpenAPI(
        __name__,
        info=Info(title="Music studio parent API", version="1.0.0"),
        security_schemes=SECURITY_SCHEMES,
        validation_error_status=422,
        validation_error_callback=flask_openapi3_validation_callback,
        doc_ui=settings.API_DOCS,
    )
    app.config.update(
        STUDIO_SETTINGS=settings,
        RATELIMIT_AUTH=settings.RATELIMIT_AUTH,
        RATELIMIT_BOOKINGS=settings.RATELIMIT_BOOKINGS,
        RATELIMIT_PARENT_WRITES=settings.RATELIMIT_PARENT_WRITES,
        MAX_CONTENT_LENGTH=request_limits.MAX_CONTENT_LENGTH,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["studio_supabase"] = SupabaseVerifier(settings)

    register_error_handlers(app)
    observability.install(app)  # first: a request refused by the checks below still has its id
    request_limits.install(app)
    if settings.TRUSTED_PROXIES:
        # Behind compose's nginx: the client's address (per-address rate limits) and scheme.
        hops = settings.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    response_headers.install(app, cors_paths=API_PREFIXES if settings.cors_origins else None)
    app.register_api(auth.bp)
    app.register_api(public.bp)
    app.register_api(public.health_bp)
    app.register_api(parent.bp)
    app.register_api(waitlist.bp)
    app.register_api(admin.bp)
    app.register_blueprint(webhooks.bp)

    limiter = rate_limits.install(app, settings)
    limiter.exempt(webhooks.bp)
    if settings.cors_origins:
        CORS(
            app,
            resources={API_PREFIXES: {"origins": settings.cors_origins}},
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed", "X-Request-ID"],
            max_age=600,
        )

    @app.get("/openapi.json", doc_ui=False)
    def openapi_json():
        """The OpenAPI document (always served; flask-openapi3's /openapi/ pages only with API_DOCS)."""
        return app.api_doc

    @app.after_request
    def _no_store(response):
        if request.path.startswith("/parent/") and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
