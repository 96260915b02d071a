"""The consumer's entry module: `huey_consumer workers.consumer.huey` (or `studioctl worker`).

It imports the Huey app, every task and the periodic jobs, and wires the process, so the
consumer knows every task whatever else happened to be imported.
"""

from __future__ import annotations

from workers import periodic, tasks, wiring
from workers.app import huey

wiring.install()

__all__ = ["huey", "periodic", "tasks"]
