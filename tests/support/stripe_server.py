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
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.processes import ROOT, free_port, stop_process, wait_for_port


def start_subprocess(
    port: int | None = None, *, pickle_path: str | None = None, log_path: str | None = None
) -> tuple[subprocess.Popen, str]:
    """Start the server in a child process; returns (process, base URL)."""
    port = port or free_port()
    command = [sys.executable, "-m", "tests.support.stripe_server", "--port", str(port)]
    if pickle_path:
        command += ["--pickle", pickle_path]
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            output.close()  # the child holds its own copy
    try:
        wait_for_port(port, process=process)
    except RuntimeError:
        process.kill()
        raise
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def running(*, pickle_path: str | None = None, log_path: str | None = None, stop_timeout: float = 10.0) -> Iterator[str]:
    """The server in a child process for the `with` block; yields its base URL. Stopped on exit:
    SIGTERM (it then logs the requests it checked, `stripe_contract.py`), SIGKILL after
    `stop_timeout` seconds."""
    process, base_url = start_subprocess(pickle_path=pickle_path, log_path=log_path)
    try:
        yield base_url
    finally:
        stop_process(process, timeout=stop_timeout)


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


if __name__ == "__main__":
    main()
