"""Run localstripe with our compatibility layer, bound to loopback only.

    python -m tests.support.stripe_server --port 8420 [--pickle PATH] [--webhook-url URL --webhook-secret whsec_x]

localstripe's own CLI binds every interface and shares /tmp/localstripe.pickle between
runs; this launcher binds 127.0.0.1, keeps its state in memory (or at `--pickle`), and
adds what our code needs (see `tests/support/localstripe_compat.py`). The demo, the
benchmarks and the tests all start Stripe this way.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something listens on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_subprocess(port: int | None = None, *, pickle_path: str | None = None, log_path: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server in a child process; returns (process, base URL)."""
    port = port or free_port()
    command = [sys.executable, "-m", "tests.support.stripe_server", "--port", str(port)]
    if pickle_path:
        command += ["--pickle", pickle_path]
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
    except RuntimeError:
        process.kill()
        raise
    return process, f"http://127.0.0.1:{port}"


def register_webhook(base_url: str, url: str, secret: str, name: str = "studio") -> None:
    """Tell the server to POST its events to `url`, signed with `secret`."""
    data = f"url={urllib.parse.quote(url, safe='')}&secret={urllib.parse.quote(secret, safe='')}".encode()
    request = urllib.request.Request(f"{base_url}/_config/webhooks/{name}", data=data, method="POST")
    urllib.request.urlopen(request, timeout=5).close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--pickle", default=None, help="persist the store here (default: memory only)")
    parser.add_argument("--webhook-url", default=None, help="deliver events to this URL")
    parser.add_argument("--webhook-secret", default=None, help="signing secret for --webhook-url")
    args = parser.parse_args(argv)

    from aiohttp import web

    from localstripe.webhooks import register_webhook as register
    from tests.support.localstripe_compat import build_app

    app = build_app(pickle_path=args.pickle)
    if args.webhook_url:
        register("studio", args.webhook_url, args.webhook_secret or "whsec_local", None)
    logging.basicConfig(level=logging.WARNING)
    print(f"local Stripe on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


import urllib.parse  # noqa: E402  (used by register_webhook)

if __name__ == "__main__":
    main()
