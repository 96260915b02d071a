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

    from models import logs
    from models.config import get_settings

    settings = get_settings()
    # The app's lines (a request each, warnings: the rate limiter falling back to memory, an
    # enqueue that failed...) and gunicorn's own, in LOG_FORMAT on stderr.
    root, level = logging.getLogger(), logging.getLogger().level
    handler = logs.configure(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)
    metrics_dir = None if dev else use_multiprocess_metrics()  # before anything imports prometheus_client
    try:
        _run(host, port, workers, threads, dev, json_logs=settings.LOG_FORMAT == "json")
    finally:  # the server stopped (or a test's fake one returned): leave the process as it was
        end_multiprocess_metrics(metrics_dir)
        root.removeHandler(handler)
        root.setLevel(level)


def _run(host: str, port: int, workers: int, threads: int, dev: bool, *, json_logs: bool) -> None:
    from webapi import create_app

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
            # JSON logs: the app's `http.request` line (with the request id) is the access log.
            self.cfg.set("accesslog", None if json_logs else "-")
            self.cfg.set("access_log_format", ACCESS_LOG_FORMAT)
            self.cfg.set("logger_class", _gunicorn_logger_class())
            self.cfg.set("post_fork", _post_fork)
            self.cfg.set("child_exit", _child_exit)
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


def use_multiprocess_metrics() -> tuple[str, bool] | None:
    """Prometheus' multi-process mode for gunicorn's workers: PROMETHEUS_MULTIPROC_DIR (emptied
    of the last run's files) or a temporary folder, set before prometheus_client is imported —
    it picks its mode then. Returns (folder, made here); None when it was imported already."""
    import os
    import sys
    import tempfile
    from pathlib import Path

    if "prometheus_client" in sys.modules:  # (only in a test process) its mode is fixed
        return None
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for leftover in Path(folder).glob("*.db"):
            leftover.unlink()
        return folder, False
    folder = tempfile.mkdtemp(prefix="studio-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder, True


def end_multiprocess_metrics(made: tuple[str, bool] | None) -> None:
    """Remove the temporary folder `use_multiprocess_metrics` made (a given one is kept)."""
    import os
    import shutil

    if made is not None and made[1]:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(made[0], ignore_errors=True)


def _child_exit(_server, worker) -> None:
    # A worker gone: its live gauges' files are dropped (prometheus-client's multi-process protocol).
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def _gunicorn_logger_class():
    """gunicorn's logger, its lines written in the studio's format (models/logs.py)."""
    from gunicorn.glogging import Logger

    from models import logs
    from models.config import get_settings

    class StudioGunicornLogger(Logger):
        def setup(self, cfg):
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.setFormatter(logs.formatter(get_settings().LOG_FORMAT))

    return StudioGunicornLogger


def _post_fork(_server, _worker) -> None:
    # Each worker opens its own database connections; none may be shared across the fork.
    from models.db import dispose_engines

    dispose_engines()


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the studioctl app."""
    app.command("serve")(_serve)
