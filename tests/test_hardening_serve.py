"""Issue 11 under the embedded `studioctl serve` (gunicorn): what it refuses before the app
(item 13: 414/431 as problem+json), how many slow clients it takes to stall it, and the
proxy compose puts in front of it (item 4).

One server for the module: one worker, two threads, on a migrated SQLite file, so the
limits are exact (with several workers the kernel spreads connections unevenly).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest
import yaml

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


# 4. Slow clients -------------------------------------------------------------------------------


@contextmanager
def slow_clients(port: int, count: int, *, every: float = 1.0):
    """`count` connections that send a request line, then one more header line every `every`
    seconds and never the blank line that ends the headers (slowloris)."""
    stop = threading.Event()
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5)) for _ in range(count)]
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

        def trickle() -> None:
            line = 0
            while not stop.wait(every):
                line += 1
                for sock in sockets:
                    try:
                        sock.sendall(f"X-Slow-{line}: 1\r\n".encode())
                    except OSError:
                        pass

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        time.sleep(0.5)  # every slow client has been handed to a thread
        try:
            yield
        finally:
            stop.set()
            feeder.join(timeout=5)


def test_item_04_slow_clients_stall_gunicorn_at_its_thread_count(server):
    """Measured, and what the README says: gunicorn's gthread worker reads a request's headers
    in one of its threads and has no header timeout (a client trickling a line a second holds
    the thread until the 100-header limit, ~100 s). One worker with two threads serves others
    while one slow client is connected and stalls with two; the API is back once they leave.
    `studioctl serve`'s defaults (2 workers x 4 threads) stall with 8 — or fewer, connections
    spreading unevenly over workers — which is why compose puts nginx in front."""
    assert get(server.port, timeout=5) == 200
    with slow_clients(server.port, THREADS - 1):
        assert get(server.port, timeout=5) == 200
    with slow_clients(server.port, THREADS):
        assert get(server.port, timeout=2) is None  # every thread waits for a slow client's headers
    assert get(server.port, timeout=5) == 200


def _nginx_locations(conf: str) -> dict[str, str]:
    """`location` → its block (up to the first line holding only `}`: no nested blocks there)."""
    return dict(re.findall(r"location\s+(?:=\s+)?(\S+)\s*\{\n(.*?)\n\s*\}$", conf, re.DOTALL | re.MULTILINE))


def test_item_04_compose_serves_the_api_only_through_a_buffering_proxy():
    """compose published gunicorn's port directly. The API is now only `expose`d, and nginx
    (deploy/nginx.conf, mounted) takes the published port, reads requests whole under timeouts
    and size limits, and answers its own refusals in problem+json."""
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    services = compose["services"]
    api, proxy = services["api"], services["proxy"]
    assert "ports" not in api and api["expose"] == ["8000"]
    assert api["environment"]["TRUSTED_PROXIES"] == "1" and api["environment"]["DATABASE_URL"].startswith("postgresql")
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]
    assert proxy["image"].startswith("nginx:") and proxy["ports"] == ["8000:8080"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]

    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    directive = dict(re.findall(r"^\s{4}(client_\w+|large_client_header_buffers)\s+([^;]+);", conf, re.MULTILINE))
    assert directive["client_header_timeout"] == "10s" and directive["client_body_timeout"] == "10s"
    assert directive["client_max_body_size"] == "64k" and directive["large_client_header_buffers"] == "4 8k"
    assert "proxy_pass http://api;" in conf and "server api:8000;" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf  # replaced: the client cannot prepend hops
    locations = _nginx_locations(conf)
    assert "client_max_body_size 1m;" in locations["/webhooks/stripe"]
    pages = dict(re.findall(r"error_page\s+(\d+)\s+(?:=\d+\s+)?(\S+);", conf))
    assert set(pages) == {"400", "413", "414", "494", "502", "504"}
    for code, page in pages.items():
        block = locations[page]
        assert "internal;" in block and "default_type application/problem+json;" in block, page
        status, body = re.search(r"return (\d+) '(.*)';", block).groups()
        problem = json.loads(body)
        expected = 431 if code == "494" else int(code)  # 494: nginx's own code for a header too large
        assert int(status) == problem["status"] == expected and problem["type"] and problem["title"]


def test_item_04_behind_the_proxy_rate_limits_count_per_client(db, monkeypatch):
    """Behind nginx every request comes from the proxy's address: the per-address limits of
    /auth/* would be one bucket for everyone. With TRUSTED_PROXIES=1 the client's address is
    X-Forwarded-For (nginx replaces it); with 0 (no proxy) the header is ignored."""
    from tests.support.api import make_app

    for hops, per_client in ((0, False), (1, True)):
        monkeypatch.setenv("TRUSTED_PROXIES", str(hops))
        client = make_app(RATELIMIT_AUTH="1/minute").test_client()
        first, again = (client.post("/auth/exchange", headers={"X-Forwarded-For": "203.0.113.1"}) for _ in range(2))
        other = client.post("/auth/exchange", headers={"X-Forwarded-For": "203.0.113.2"})
        assert (first.status_code, again.status_code) == (401, 429)
        assert other.status_code == (401 if per_client else 429), hops
