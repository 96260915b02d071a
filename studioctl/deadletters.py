"""`studioctl deadletters`: jobs that failed for good; replay or resolve them."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Dead letters (failed jobs).\n\nExample: studioctl deadletters list", no_args_is_help=True)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include resolved ones.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """List open dead letters, newest first.

    Example: studioctl deadletters list --all --json
    """
    from sqlmodel import select

    from models.db import session_scope
    from models.outbox import DeadLetter

    with session_scope(write=False) as session:
        statement = select(DeadLetter).order_by(DeadLetter.id.desc())
        if not all_:
            statement = statement.where(DeadLetter.resolved_at.is_(None))
        rows = [{"id": r.id, "kind": r.kind, "payload": r.payload, "error": r.error, "created_at": r.created_at,
                 "retried_at": r.retried_at, "resolved_at": r.resolved_at} for r in session.exec(statement).all()]
    if json_output:
        return emit_json(rows)
    print_table("Dead letters", ["id", "kind", "payload", "error", "created", "resolved"],
                [[r["id"], r["kind"], r["payload"], r["error"][:70], r["created_at"], r["resolved_at"] or "-"] for r in rows],
                empty="no dead letters")


def replay(kind: str, payload: dict) -> str:
    """Enqueue the job a dead letter describes again (after putting its row back in a retryable state)."""
    from models.db import session_scope
    from models.errors import Invalid
    from workers import tasks

    if kind == "send_email":
        from models.outbox import get_email, requeue_email

        with session_scope() as session:
            requeue_email(session, get_email(session, payload["email_id"]))
        return f"email {payload['email_id']} queued again"
    if kind == "process_stripe_event":
        from models.billing import get_stripe_event

        with session_scope() as session:
            event = get_stripe_event(session, payload["event_id"])
            event.status = "received"
            session.add(event)
        tasks.process_stripe_event(payload["event_id"])
        return f"Stripe event {payload['event_id']} queued again"
    if kind == "cancel_subscription":
        tasks.cancel_subscription(payload["enrollment_id"])
        return f"cancellation of enrollment {payload['enrollment_id']}'s subscription queued again"
    if kind == "undo_orphan_charges":
        tasks.undo_orphan_charges(payload["enrollment_id"])
        return f"the Stripe check of ended booking {payload['enrollment_id']} queued again"
    if kind == "book_enrollment":
        raise Invalid("a failed booking is final: the parent books again (the slot is free)")
    raise Invalid(f"no replay for dead letters of kind {kind!r}")


@app.command()
def retry(letter_id: Annotated[int, typer.Argument(help="Dead letter id.")]) -> None:
    """Replay the failed job (emails, Stripe events, subscription cancellations).

    Example: studioctl deadletters retry 3
    """
    from models.db import session_scope
    from models.outbox import get_dead_letter, mark_dead_letter_retried

    with session_scope(write=False) as session:
        letter = get_dead_letter(session, letter_id)
        kind, payload = letter.kind, dict(letter.payload)
    message = replay(kind, payload)
    with session_scope() as session:
        mark_dead_letter_retried(session, get_dead_letter(session, letter_id))
    console.print(f"[green]{message}[/] (resolve the dead letter once it went through)")


@app.command()
def resolve(letter_id: Annotated[int, typer.Argument(help="Dead letter id.")]) -> None:
    """Mark a dead letter handled.

    Example: studioctl deadletters resolve 3
    """
    from models.db import session_scope
    from models.outbox import get_dead_letter, resolve_dead_letter

    with session_scope() as session:
        resolve_dead_letter(session, get_dead_letter(session, letter_id))
    console.print(f"[green]dead letter {letter_id} resolved[/]")
