"""A private `redis-server` on a free loopback port with its own directory, for tests that
restart or stop Redis (the shared 127.0.0.1:6379 is never touched).

No persistence (`--save "" --appendonly no`): a restart loses every key, the harshest case
for a task queue (what was queued is gone; the reconciliation jobs must recover it).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.processes import free_port, stop_process


class PrivateRedis:
    """Start, kill -9, restart and stop one redis-server; `url` stays the same across restarts."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"private redis-server did not start on port {self.port}: see {self.directory / 'redis.log'}")

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)

    def ping(self) -> bool:
        try:
            client = self.client()
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def kill_9(self) -> None:
        """Die at once, like a crashed or OOM-killed Redis (nothing saved)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        """kill -9, stay down `down_for` seconds, start again on the same port (empty)."""
        self.kill_9()
        if down_for:
            time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
