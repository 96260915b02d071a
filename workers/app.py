"""The one Huey instance: Redis when `REDIS_URL` is set, else SQLite storage beside the database."""

from __future__ import annotations

from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey

from models.config import Settings, get_settings

_settings = get_settings()
# The queue's name; tests give each run its own so parallel runs never share a Redis queue.
HUEY_NAME = _settings.HUEY_NAME
# Retry policy of the tasks that talk to Stripe and Mailjet (transient errors only):
# `retries` attempts after the first, the first `delay` seconds later, then times `backoff`.
# Tests shrink the delay so a real consumer exhausts its retries in a few seconds.
TASK_RETRIES = _settings.WORKER_TASK_RETRIES
TASK_RETRY_DELAY = _settings.WORKER_RETRY_DELAY
TASK_RETRY_BACKOFF = _settings.WORKER_RETRY_BACKOFF


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
