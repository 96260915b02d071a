"""Process wiring: what each entry point (the CLI's root group, `create_app`, the consumer)
installs before doing any work. Cheap to import: Huey and the tasks load on the first send."""

from __future__ import annotations

from models import dispatch


def _enqueue_send(email_id: int) -> None:
    from workers.tasks import send_email

    send_email(email_id)


def install() -> None:
    """Emails queued in a unit of work are enqueued for sending once it commits."""
    dispatch.set_email_dispatcher(_enqueue_send)
