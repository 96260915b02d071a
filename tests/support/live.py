"""The API over real HTTP on loopback: in a threaded werkzeug server (this process) or under
gunicorn (`studioctl serve`, child process), plus a tiny JSON client for many threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import ROOT, child_pids, free_port, stop_process, wait_for_port


@contextmanager
def threaded_server(app):
    """`app` on 127.0.0.1 in a threaded werkzeug server (one thread per request); yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Gunicorn:
    """`studioctl serve` (gunicorn; gthread, or the sync worker with `threads=1`) in a child
    process with its own environment, on a free loopback port; it runs in the log's folder."""

    def __init__(self, env: dict, log_path: Path, *, workers: int = 2, threads: int = 4):
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "studioctl.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.log_path.parent, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.port, timeout=30, process=self.process)
            wait_until_ok(f"{self.url}/healthz", timeout=30)
        except Exception:
            self.__exit__(None, None, None)
            raise AssertionError(f"gunicorn did not start:\n{self.log()[-3000:]}") from None
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.process, group=True)  # the arbiter and its workers

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes (children of the arbiter)."""
        return child_pids(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_env(*, without: Iterable[str] = (), **values: str) -> dict:
    """This process's environment (in a test: the autouse settings) less the names in
    `without`, plus `values`, for a child process that imports this checkout."""
    dropped = set(without)
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


@dataclass
class Answer:
    status: int
    headers: dict
    body: dict | None = field(default=None)

    @property
    def mimetype(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()


def call(method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 60) -> Answer:
    """One HTTP request; 4xx/5xx are answers too (never raised)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, dict(error.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = {"raw": raw.decode(errors="replace")}
    return Answer(status, got, parsed)


def wait_until_ok(url: str, timeout: float = 30) -> None:
    """Poll `url` until it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if call("GET", url, timeout=5).status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.1)


def concurrently(jobs, *, timeout: float = 120) -> list:
    """Run the callables in `jobs` at the same moment (one thread each, a barrier); results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(index, job):
        barrier.wait()
        try:
            results[index] = job()
        except Exception as error:  # the assertion shows it
            results[index] = error

    threads = [threading.Thread(target=run, args=(index, job), daemon=True) for index, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "requests still running after the timeout"
    return results
