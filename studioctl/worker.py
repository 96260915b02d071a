"""`studioctl worker`: the Huey consumer (booking pipeline, emails, webhooks, periodic jobs)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `worker` command to the root app."""

    @app.command()
    def worker(
        workers: Annotated[int, typer.Option("--workers", "-w", help="Workers (threads or processes).")] = 4,
        worker_type: Annotated[str, typer.Option("--worker-type", "-k", help="thread or process.")] = "thread",
        periodic: Annotated[bool, typer.Option("--periodic/--no-periodic", help="Run the periodic jobs too.")] = True,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Run the Huey consumer until SIGINT (Ctrl-C lets running tasks finish).

        Locks of periodic jobs are flushed at start: a consumer killed while holding one
        would otherwise block that job forever (Huey locks have no TTL).

        Threads are the default (`-w 4`): on the 2-core box, `-k process -w 2` and `-w 2` were
        within the noise of it in bench/pipeline.py (bench/results.md, "Optimisations"), and a
        process worker outlives a consumer killed with -9 (Huey does not stop orphans).

        Example: studioctl worker --workers 4
        """
        import logging

        if worker_type not in ("thread", "process"):
            raise typer.BadParameter("thread or process", param_hint="--worker-type")

        from models import logs
        from models.config import get_settings

        settings = get_settings()
        logs.configure(level="DEBUG" if verbose else settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)
        if worker_type == "process" and settings.WORKER_METRICS_PORT:
            from studioctl.serve import use_multiprocess_metrics

            use_multiprocess_metrics()  # the worker processes' metrics, summed by the scrape

        from huey.consumer_options import ConsumerConfig

        from workers.consumer import huey

        _warm_up()
        config = ConsumerConfig(
            workers=workers,
            worker_type=worker_type,
            periodic=periodic,
            flush_locks=True,
            verbose=True if verbose else None,
            initial_delay=0.1,
            max_delay=2.0,
        )
        logging.getLogger("huey").info(
            "queue %s on %s", huey.name, "Redis" if settings.REDIS_URL else "SQLite beside the database"
        )
        consumer = huey.create_consumer(**config.values)
        consumer.run()


def _warm_up() -> None:
    """Import what the tasks import lazily (Stripe's SDK, the pipeline, the mailer), configure
    the ORM mappers and compile the email templates before the workers start: process workers
    are forked after this and share it instead of each paying ~0.3 s of CPU on its first task,
    and thread workers start warm. No database or Stripe connection is opened here (a forked
    worker must not inherit one)."""
    from sqlalchemy.orm import configure_mappers

    from models.outbox import TEMPLATES
    from workers import mailer, pipeline, webhook_events  # noqa: F401
    from workers.emails import environment

    configure_mappers()
    for template in TEMPLATES:
        for part in ("subject.txt", "body.txt", "body.html"):
            environment().get_template(f"{template}/{part}")
