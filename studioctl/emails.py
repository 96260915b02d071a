"""`studioctl emails`: the outbox (every email, its attempts and outcome)."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Emails sent and to send.\n\nExample: studioctl emails list --status failed", no_args_is_help=True)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="queued | sending | sent | failed")] = None,
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    json_output: bool = JsonOption,
) -> None:
    """List emails, newest first.

    Example: studioctl emails list --status failed --json
    """
    from models.db import session_scope
    from models.outbox import list_emails

    with session_scope(write=False) as session:
        rows = list_emails(session, status=status, limit=limit)
    if json_output:
        return emit_json(rows)
    print_table(
        "Emails",
        ["id", "template", "recipient", "status", "attempts", "error"],
        [[r["id"], r["template"], r["recipient"], r["status"], r["attempts"], (r["error"] or "")[:60]] for r in rows],
        empty="no emails",
    )


@app.command()
def retry(email_id: Annotated[int, typer.Argument(help="Email id.")]) -> None:
    """Queue a failed (or stuck) email again; a sent email is refused.

    Example: studioctl emails retry 42
    """
    from models.db import session_scope
    from models.outbox import get_email, requeue_email

    with session_scope() as session:
        requeue_email(session, get_email(session, email_id))
    console.print(f"[green]email {email_id} queued again[/]")
