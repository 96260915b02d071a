"""The one Huey instance: Redis when `REDIS_URL` is set, else SQLite storage beside the database."""

from __future__ import annotations

from pathlib import Path

from huey import Huey
from huey.api import PeriodicTask, Task, TaskWrapper
from huey.storage import RedisStorage, SqliteStorage

from models import logs
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


# The keyword argument a task carries the id of the request or job that enqueued it in. Its
# function never sees it (`CarriedTask.data`); a consumer older than this code would.
REQUEST_ID_ARG = "studio_request_id"


class CarriedTask(Task):
    """A task that carries the `request_id` of whoever enqueued it, outside its own arguments."""

    @property
    def data(self):
        return self.args, {name: value for name, value in self.kwargs.items() if name != REQUEST_ID_ARG}


class CarriedTaskWrapper(TaskWrapper):
    task_base = CarriedTask


class StudioHuey(Huey):
    """Huey whose tasks carry the request id of the request, task or job that enqueued them
    (stored in the message, so retries keep it), and whose consumer runs each task inside a log
    context: `request_id` (carried, or `job-...` for a periodic job), `task`, `task_id`."""

    def get_task_wrapper_class(self):
        return CarriedTaskWrapper

    def enqueue(self, task):
        if isinstance(task, CarriedTask) and REQUEST_ID_ARG not in task.kwargs:
            request_id = logs.current().get("request_id")
            if request_id:
                task.kwargs = {**task.kwargs, REQUEST_ID_ARG: request_id}
        return super().enqueue(task)

    def execute(self, task, timestamp=None):
        carried = task.kwargs.get(REQUEST_ID_ARG) if isinstance(task, CarriedTask) else None
        request_id = carried or logs.new_id("job" if isinstance(task, PeriodicTask) else "task")
        with logs.context(request_id=request_id, task=task.name, task_id=task.id):
            return super().execute(task, timestamp)

    def create_consumer(self, **options):
        """The consumer of `huey_consumer` and `studioctl worker` alike: logs in the studio's
        format (Huey's own handler dropped), and /metrics when WORKER_METRICS_PORT is set."""
        import logging

        from workers import metrics

        settings = get_settings()
        logging.getLogger("huey").handlers.clear()
        if not logs.configured():  # `studioctl worker` configured them already (-v: DEBUG)
            logs.configure(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)
        if settings.WORKER_METRICS_PORT:
            metrics.serve(settings.WORKER_METRICS_HOST, settings.WORKER_METRICS_PORT, token=settings.METRICS_TOKEN, queue=self)
        return super().create_consumer(**options)


def make_huey(settings: Settings | None = None) -> Huey:
    """Build the Huey instance for `settings` (retried attempts must not look failed)."""
    settings = settings or get_settings()
    common = {"results": True, "store_none": False, "utc": True, "store_intermediate_errors": False}
    if settings.REDIS_URL:
        return StudioHuey(HUEY_NAME, storage_class=RedisStorage, url=settings.REDIS_URL, **common)
    return StudioHuey(HUEY_NAME, storage_class=SqliteStorage, filename=str(huey_sqlite_path(settings)), **common)


huey = make_huey()
