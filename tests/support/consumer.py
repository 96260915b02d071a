"""A real Huey consumer in a child process, on Redis, with its own queue name.

`Consumer` runs `huey_consumer` with short polling by default; the benchmarks give it the
production entry point (`studioctl worker ...`) instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from tests.support.live import server_env
from tests.support.processes import stop_process

HUEY_CONSUMER = [
    sys.executable,
    "-m",
    "huey.bin.huey_consumer",
    "workers.consumer.huey",
    "-w",
    "2",
    "-k",
    "thread",
    "--flush-locks",
    "-d",
    "0.05",
    "-m",
    "0.5",
    "-s",
    "1",
]


class Consumer:
    """Start, kill and restart one consumer; every start appends to the same log file.

    It runs in the folder above `env["OUTBOX_DIR"]` unless `cwd` is given."""

    def __init__(self, env: dict, log_path: Path, *, command: list[str] | None = None, cwd: Path | None = None):
        self.env = env
        self.log_path = log_path
        self.command = command or HUEY_CONSUMER
        self.cwd = cwd or Path(env["OUTBOX_DIR"]).parent
        self.process: subprocess.Popen | None = None

    def start(self) -> Consumer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_for_log(self, text: str, *, timeout: float = 30.0) -> None:
        """Block until `text` shows in the log (e.g. the consumer says it started)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the consumer did not start: {self.log()[-2000:]}")
            time.sleep(0.1)

    def kill_9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGINT (running tasks finish), SIGKILL after 10 s."""
        stop_process(self.process, sig=signal.SIGINT, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def consumer_env(*, db_url: str, redis_url: str, stripe_base: str, tmp_path: Path, **extra) -> dict:
    """Environment of a consumer under test: short retries, a private queue name."""
    (tmp_path / "outbox").mkdir(exist_ok=True)
    return server_env(
        **{
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "HUEY_NAME": f"studio-test-{uuid.uuid4().hex[:10]}",
            "STRIPE_SECRET_KEY": "sk_test_studio",
            "STRIPE_API_BASE": stripe_base,
            "STRIPE_WEBHOOK_SECRET": "whsec_test_secret_0123456789",
            "EMAIL_BACKEND": "file",
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            "WORKER_TASK_RETRIES": "2",
            "WORKER_RETRY_DELAY": "0.2",
            "WORKER_RETRY_BACKOFF": "1",
            **extra,
        }
    )


@contextmanager
def redis_queue(task_queue, env: dict):
    """Enqueue from the test process into the consumer's Redis queue (same name)."""
    from huey.storage import RedisStorage

    huey = task_queue.huey
    original = huey.storage
    huey.storage = RedisStorage(name=env["HUEY_NAME"], url=env["REDIS_URL"])
    try:
        yield huey
    finally:
        huey.storage.flush_all()
        huey.storage = original


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
