"""Child processes on loopback ports, for the tests, the benchmarks and the demo.

Nothing here imports pytest: the benchmarks and `make demo` start their servers with it too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", *, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    """Block until something listens on 127.0.0.1:`port`; fail early when `process` (the one
    meant to listen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before listening on {port}")
        if port_open(port, timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(
    process: subprocess.Popen | None, *, sig: int = signal.SIGTERM, timeout: float = 15.0, group: bool = False
) -> None:
    """Stop a process we started: `sig`, then SIGKILL once `timeout` seconds have passed.

    `group=True` signals its whole process group (a process started with
    `start_new_session=True`, such as gunicorn's arbiter and its workers)."""
    if process is None or process.poll() is not None:
        return

    def send(signum: int) -> None:
        try:
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        except ProcessLookupError:
            pass

    send(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(10)


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (e.g. gunicorn's workers under its arbiter)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(item) for item in text.split()]
