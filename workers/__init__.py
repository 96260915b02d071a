"""Huey workers: the booking pipeline, emails, webhooks and periodic jobs.

Nothing is wired by importing a module: each process entry calls `workers.wiring.install()`
(the CLI's root group, `webapi.create_app`, `workers.consumer` — the consumer's entry module,
which also imports every task and periodic job).
"""
