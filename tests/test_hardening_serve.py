"""Issue 11 under the embedded `studioctl serve` (gunicorn): what it refuses before the app
(item 13: 414/431 as problem+json).

One server for the module: one worker, two threads, on a migrated SQLite file, so the
limits are exact (with several workers the kernel spreads connections unevenly).
"""

from __future__ import annotations

import json
import socket

import pytest

from studioctl.serve import LIMIT_REQUEST_FIELD_SIZE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_LINE
from tests.support.databases import migrate
from tests.support.live import Gunicorn
from tests.support.processes import ROOT
from tests.support.settings import BASE_ENV, CLEARED_ENV

THREADS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    folder = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{folder / 'studio.db'}"
    migrate(url)
    env = {name: value for name, value in os.environ.items() if name not in CLEARED_ENV}
    env.update(BASE_ENV, DATABASE_URL=url, OUTBOX_DIR=str(folder / "outbox"), PYTHONPATH=str(ROOT))
    with Gunicorn(env, folder / "gunicorn.log", workers=1, threads=THREADS) as running:
        yield running


def exchange(port: int, data: bytes, *, timeout: float = 5) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the whole answer (the server closes): status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def get(port: int, path: str = "/healthz", *, timeout: float) -> int | None:
    """The status of a plain GET, or None when no answer came within `timeout` seconds."""
    try:
        status, _, _ = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=timeout)
        return status
    except TimeoutError:
        return None


# 13. What gunicorn refuses before the app is problem+json too ----------------------------------


@pytest.mark.parametrize(
    ("request_head", "status", "type_"),
    [
        (f"GET /public/{'x' * LIMIT_REQUEST_LINE} HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri-too-long"),
        (
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'y' * LIMIT_REQUEST_FIELD_SIZE}\r\n\r\n",
            431,
            "request-header-fields-too-large",
        ),
        (
            "GET /healthz HTTP/1.1\r\n" + "".join(f"X-{n}: 1\r\n" for n in range(LIMIT_REQUEST_FIELDS + 1)) + "\r\n",
            431,
            "request-header-fields-too-large",
        ),
        ("NOT A REQUEST\r\n\r\n", 400, "bad-request"),
    ],
)
def test_item_13_what_gunicorn_refuses_is_problem_json(server, request_head, status, type_):
    """gunicorn answered these with an HTML page; the document declares 414 and 431 (and every
    error) as `application/problem+json`."""
    got, headers, body = exchange(server.port, request_head.encode())
    assert got == status and headers["Content-Type"] == "application/problem+json", (got, headers, body[:200])
    problem = json.loads(body)
    assert problem["status"] == status and problem["type"] == type_ and problem["title"]
    assert int(headers["Content-Length"]) == len(body)
