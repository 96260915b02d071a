"""`studioctl serve`: run the parent API under gunicorn (Flask's dev server only with `--dev`)."""

from __future__ import annotations

from typing import Annotated

import typer

# gunicorn's default access line logs the query string (`%(r)s`), and the calendar feed's
# query string holds the family's secret token: log the path only.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(D)sus "%(a)s"'
# What gunicorn refuses before the app sees the request (gunicorn's defaults, set explicitly:
# the OpenAPI document states them, webapi/openapi_doc.py): a request line over 4,094 bytes
# is a 414, a header line over 8,190 bytes or more than 100 headers a 431.
LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELD_SIZE = 8190
LIMIT_REQUEST_FIELDS = 100


def _serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=64, help="gunicorn worker processes.")] = 2,
    threads: Annotated[int, typer.Option("--threads", min=1, max=64, help="Threads per worker (gthread).")] = 4,
    dev: Annotated[bool, typer.Option("--dev", help="Flask's reloading development server instead of gunicorn.")] = False,
) -> None:
    """Run the parent REST API (the app of webapi.create_app).

    Example: studioctl serve --host 0.0.0.0 --port 8000 --workers 4
    """
    import logging

    from webapi import create_app

    # One line per warning on stderr (next to gunicorn's own lines): the rate limiter falling
    # back to memory, an after-commit enqueue that failed, a readiness check that failed.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()  # validates the settings once, here, with one clear line on failure
    if dev:
        # No Werkzeug debugger: its /console runs code for whoever reaches the port.
        app.run(host=host, port=port, debug=True, use_reloader=False, use_debugger=False)
        return
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("accesslog", "-")
            self.cfg.set("access_log_format", ACCESS_LOG_FORMAT)
            self.cfg.set("post_fork", _post_fork)
            self.cfg.set("limit_request_line", LIMIT_REQUEST_LINE)
            self.cfg.set("limit_request_field_size", LIMIT_REQUEST_FIELD_SIZE)
            self.cfg.set("limit_request_fields", LIMIT_REQUEST_FIELDS)

        def load(self):
            return create_app()

    _answer_refusals_as_problems()
    _Gunicorn().run()


def _problem_page(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it refuses itself (414, 431, a malformed request: 400) as
    `application/problem+json`, like every other error of the API, instead of its HTML page."""
    import json

    from gunicorn import util

    problem = {"type": "-".join(reason.lower().split()), "title": reason, "status": status_int}
    if mesg:
        problem["detail"] = mesg
    body = json.dumps(problem).encode()
    head = f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
    util.write_nonblock(sock, f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)


def _answer_refusals_as_problems() -> None:
    # gunicorn has no setting for its error page: its workers call `gunicorn.util.write_error`,
    # replaced here in the arbiter before the workers fork (they inherit it).
    from gunicorn import util

    util.write_error = _problem_page


def _post_fork(_server, _worker) -> None:
    # Each worker opens its own database connections; none may be shared across the fork.
    from models.db import dispose_engines

    dispose_engines()


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the studioctl app."""
    app.command("serve")(_serve)
