"""A real `huey_consumer` in a child process, on Redis, with its own queue name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Consumer:
    """Start, kill and restart one consumer; every start appends to the same log file."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "Consumer":
        command = [sys.executable, "-m", "huey.bin.huey_consumer", "workers.consumer.huey",
                   "-w", "2", "-k", "thread", "--flush-locks", "-d", "0.05", "-m", "0.5", "-s", "1"]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=self.env["OUTBOX_DIR"] + "/..", env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill_9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def consumer_env(*, db_url: str, redis_url: str, stripe_base: str, tmp_path: Path, **extra) -> dict:
    """Environment of a consumer under test: short retries, a private queue name."""
    env = {key: value for key, value in os.environ.items()}
    (tmp_path / "outbox").mkdir(exist_ok=True)
    env.update({
        "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url, "REDIS_URL": redis_url,
        "HUEY_NAME": f"studio-test-{uuid.uuid4().hex[:10]}", "STRIPE_SECRET_KEY": "sk_test_studio",
        "STRIPE_API_BASE": stripe_base, "STRIPE_WEBHOOK_SECRET": "whsec_test_secret_0123456789",
        "EMAIL_BACKEND": "file", "OUTBOX_DIR": str(tmp_path / "outbox"),
        "WORKER_TASK_RETRIES": "2", "WORKER_RETRY_DELAY": "0.2", "WORKER_RETRY_BACKOFF": "1",
    })
    env.update(extra)
    return env


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
