"""The one Huey instance: Redis when `REDIS_URL` is set, else SQLite storage beside the database."""

from __future__ import annotations

import os
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey

from models.config import Settings, get_settings

# The queue's name; tests give each run its own so parallel runs never share a Redis queue.
HUEY_NAME = os.environ.get("HUEY_NAME", "studio")


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# Retry policy of the tasks that talk to Stripe and Mailjet (transient errors only):
# `retries` attempts after the first, the first `delay` seconds later, then times `backoff`.
# Tests shrink the delay so a real consumer exhausts its retries in a few seconds.
TASK_RETRIES = int(_env_number("WORKER_TASK_RETRIES", 5))
TASK_RETRY_DELAY = _env_number("WORKER_RETRY_DELAY", 30)
TASK_RETRY_BACKOFF = _env_number("WORKER_RETRY_BACKOFF", 2)


def huey_sqlite_path(settings: Settings) -> Path:
    """Where the embedded task queue lives: `<database>-huey.db` beside the SQLite file."""
    database = settings.sqlite_path
    if database is not None:
        return database.with_name(database.stem + "-huey.db")
    return Path("studio-huey.db")


def make_huey(settings: Settings | None = None) -> Huey:
    """Build the Huey instance for `settings` (retried attempts must not look failed)."""
    settings = settings or get_settings()
    common = {"results": True, "store_none": False, "utc": True, "store_intermediate_errors": False}
    if settings.REDIS_URL:
        return RedisHuey(HUEY_NAME, url=settings.REDIS_URL, **common)
    return SqliteHuey(HUEY_NAME, filename=str(huey_sqlite_path(settings)), **common)


huey = make_huey()
