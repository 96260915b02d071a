"""`studioctl worker`: the Huey consumer (booking pipeline, emails, webhooks, periodic jobs)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `worker` command to the root app."""

    @app.command()
    def worker(
        workers: Annotated[int, typer.Option("--workers", "-w", help="Worker threads.")] = 4,
        periodic: Annotated[bool, typer.Option("--periodic/--no-periodic", help="Run the periodic jobs too.")] = True,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Run the Huey consumer until SIGINT (Ctrl-C lets running tasks finish).

        Locks of periodic jobs are flushed at start: a consumer killed while holding one
        would otherwise block that job forever (Huey locks have no TTL).

        Example: studioctl worker --workers 4
        """
        import logging

        from huey.consumer_options import ConsumerConfig

        from models.config import get_settings
        from workers.tasks import huey

        settings = get_settings()
        config = ConsumerConfig(workers=workers, worker_type="thread", periodic=periodic, flush_locks=True,
                                verbose=True if verbose else None, initial_delay=0.1, max_delay=2.0)
        config.setup_logger()
        logging.getLogger("huey").info(
            "queue %s on %s", huey.name, "Redis" if settings.REDIS_URL else "SQLite beside the database")
        consumer = huey.create_consumer(**config.values)
        consumer.run()
