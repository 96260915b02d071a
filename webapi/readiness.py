"""`/readyz`: may this process take traffic? `/healthz` stays the liveness probe.

Readiness asks, each time (nothing cached), what a booking needs: the database answers and
its schema is at the migrations' head, and Redis answers when `REDIS_URL` is set (the task
queue and the rate-limit counters; without it the embedded SQLite queue is in use). 200 with
each check's result, or 503 problem+json naming what is down, so a load balancer holds
traffic back while the operator reads which part to fix.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from migrations import head_revisions
from models.config import Settings
from models.db import get_engine

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 1.0


def database_check() -> str | None:
    """None when the database answers at the migrations' head, else what is wrong."""
    try:
        with get_engine().connect() as connection:
            revisions = set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except Exception as error:  # unreachable, no schema at all, a SQLite file that is not there
        text = str(getattr(error, "orig", error)).lower()
        if "alembic_version" in text or "unable to open database file" in text or "not migrated" in text:
            return "not migrated: run `studioctl db upgrade`"
        log.warning("readiness: database unreachable: %s", type(error).__name__)
        return "unreachable"
    if revisions != head_revisions():
        return "not at the migrations' head: run `studioctl db upgrade`"
    return None


def redis_check(settings: Settings) -> str | None:
    """None when Redis answers a PING (or is not configured), else what is wrong."""
    if not settings.REDIS_URL:
        return None
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    try:
        client.ping()
    except redis.RedisError as error:
        log.warning("readiness: redis unreachable: %s", type(error).__name__)
        return "unreachable"
    finally:
        client.close()
    return None


def checks(settings: Settings) -> dict[str, str]:
    """Each dependency → "ok", "not configured (...)" or what is wrong with it."""
    redis = redis_check(settings) or "ok" if settings.REDIS_URL else "not configured (the SQLite task queue is in use)"
    return {"database": database_check() or "ok", "redis": redis}


def failing(results: dict[str, str]) -> dict[str, str]:
    """The checks that failed."""
    return {name: result for name, result in results.items() if result != "ok" and not result.startswith("not configured")}
