"""`studioctl serve`: run the parent API under gunicorn (Flask's dev server only with `--dev`)."""

from __future__ import annotations

from typing import Annotated

import typer

# gunicorn's default access line logs the query string (`%(r)s`), and the calendar feed's
# query string holds the family's secret token: log the path only.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(D)sus "%(a)s"'


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

        def load(self):
            return create_app()

    _Gunicorn().run()


def _post_fork(_server, _worker) -> None:
    # Each worker opens its own database connections; none may be shared across the fork.
    from models.db import dispose_engines

    dispose_engines()


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the studioctl app."""
    app.command("serve")(_serve)
