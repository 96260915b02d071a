"""Rate limits (flask-limiter): who may ask how often, counted across workers in Redis.

- `/auth/*`: one bucket per client address for both routes (`RATELIMIT_AUTH`).
- `POST /parent/bookings`: per signed-in parent (`RATELIMIT_BOOKINGS`).
- every other parent write (POST, PUT, PATCH, DELETE under `/parent/`), all in one bucket per
  signed-in parent (`RATELIMIT_PARENT_WRITES`), so one family cannot flood the studio with rows.

Counters live in Redis when `REDIS_URL` is set (shared by every gunicorn worker), else in
each process's memory (a single-process `studioctl serve` on the embedded default). When
Redis stops answering, the limits fail open to per-process memory with one warning, and go
back to Redis once it answers again: a Redis outage must not turn sign-in and booking into
500s. The answers carry no `X-RateLimit-*` headers (reading the window back costs two Redis
round trips per request); a 429 says when to retry in `Retry-After`.
"""

from __future__ import annotations

import time

from flask import Flask, current_app, g
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from models.config import Settings

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
BOOKINGS_ENDPOINT = "parent.create_booking"
# An unreachable Redis is noticed in half a second, not after the OS's connect timeout.
REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def user_or_address() -> str:
    """The signed-in parent (views run after the blueprint's authentication), else the address."""
    identity = getattr(g, "identity", None)
    return f"user:{identity.sub}" if identity is not None else get_remote_address()


def install(app: Flask, settings: Settings) -> Limiter:
    """Attach the limiter and the limits above to `app` (after its blueprints are registered)."""
    storage = app.config.get("RATELIMIT_STORAGE_URI") or settings.REDIS_URL or "memory://"
    limiter = Limiter(
        key_func=get_remote_address,
        app=app,
        headers_enabled=False,
        default_limits=[],
        storage_uri=storage,
        storage_options=REDIS_OPTIONS if storage.startswith(("redis://", "rediss://")) else {},
        in_memory_fallback_enabled=True,
        key_prefix="studio-api",
    )
    auth_bucket = limiter.shared_limit(lambda: app.config["RATELIMIT_AUTH"], scope="auth")
    for endpoint in [name for name in app.view_functions if name.startswith("auth.")]:
        app.view_functions[endpoint] = auth_bucket(app.view_functions[endpoint])
    bookings = limiter.limit(lambda: app.config["RATELIMIT_BOOKINGS"], key_func=user_or_address)
    writes = limiter.shared_limit(
        lambda: app.config["RATELIMIT_PARENT_WRITES"], scope="parent-writes", key_func=user_or_address, methods=WRITE_METHODS
    )
    app.view_functions[BOOKINGS_ENDPOINT] = bookings(app.view_functions[BOOKINGS_ENDPOINT])
    for endpoint in _parent_write_endpoints(app):
        if endpoint != BOOKINGS_ENDPOINT:  # bookings have their own limit (one Redis round trip each)
            app.view_functions[endpoint] = writes(app.view_functions[endpoint])
    return limiter


def _parent_write_endpoints(app: Flask) -> list[str]:
    # By URL, not blueprint: every blueprint under /parent/ (the waiting list's too) is a family's.
    return sorted(
        {
            rule.endpoint
            for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/parent/") and set(rule.methods or ()) & set(WRITE_METHODS)
        }
    )


def retry_after(error: RateLimitExceeded) -> int:
    """Seconds until the limit that refused the request lets one through again."""
    for limiter in current_app.extensions.get("limiter", ()):
        current = limiter.current_limit
        if current is not None:
            try:
                return max(1, int(current.reset_at - time.time()))
            except Exception:  # the storage went away between the refusal and now
                break
    return max(1, int(error.limit.limit.get_expiry()))
