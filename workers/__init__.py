"""Huey workers: the booking pipeline, emails, webhooks and periodic jobs.

Importing `workers.tasks` registers the email dispatcher with `models.outbox`, so emails
queued in a unit of work are enqueued for sending once it commits.
"""
