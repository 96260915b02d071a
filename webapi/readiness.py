"""`/readyz`: may this process take traffic? `/healthz` stays the liveness probe.

Readiness asks, each time (nothing cached), what a booking needs: the database answers and
its schema is at the migrations' head, and Redis answers when `REDIS_URL` is set (the task
queue and the rate-limit counters; without it the embedded SQLite queue is in use). 200 with
each check's result, or 503 problem+json naming what is down, so a load balancer holds
traffic back while the operator reads which part to fix.
"""

from __future__ import annotations

import logging

from models.config import Settings
from models.health import schema_status
from workers.health import redis_problem

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 1.0


def database_check() -> str | None:
    """None when the database answers at the migrations' head, else what is wrong (the same
    reading `studioctl doctor` makes: `models.health.schema_status`)."""
    status = schema_status()
    if status.ok:
        return None
    if status.state == "not_migrated":
        return "not migrated: run `studioctl db upgrade`"
    if status.state == "unreachable":
        log.warning("readiness: database unreachable: %s", status.error)
        return "unreachable"
    return "not at the migrations' head: run `studioctl db upgrade`"


def redis_check(settings: Settings) -> str | None:
    """None when Redis answers a PING (or is not configured), else what is wrong."""
    problem = redis_problem(settings, timeout=TIMEOUT_SECONDS)
    if problem:
        log.warning("readiness: redis %s", problem)
        return "unreachable"
    return None


def checks(settings: Settings) -> dict[str, str]:
    """Each dependency → "ok", "not configured (...)" or what is wrong with it."""
    redis = redis_check(settings) or "ok" if settings.REDIS_URL else "not configured (the SQLite task queue is in use)"
    return {"database": database_check() or "ok", "redis": redis}


def failing(results: dict[str, str]) -> dict[str, str]:
    """The checks that failed."""
    return {name: result for name, result in results.items() if result != "ok" and not result.startswith("not configured")}
