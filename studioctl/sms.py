"""`studioctl sms`: text messages (lesson reminders), their attempts and outcome."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Text messages sent and to send.\n\nExample: studioctl sms list --status failed", no_args_is_help=True)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="queued | sending | sent | failed")] = None,
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    json_output: bool = JsonOption,
) -> None:
    """List text messages, newest first.

    Example: studioctl sms list --status failed --json
    """
    from models.db import session_scope
    from models.sms import list_sms

    with session_scope(write=False) as session:
        rows = list_sms(session, status=status, limit=limit)
    if json_output:
        return emit_json(rows)
    print_table(
        "Text messages",
        ["id", "template", "recipient", "status", "attempts", "sid", "error"],
        [
            [r["id"], r["template"], r["recipient"], r["status"], r["attempts"], r["provider_sid"] or "", (r["error"] or "")[:60]]
            for r in rows
        ],
        empty="no text messages",
    )


@app.command()
def retry(sms_id: Annotated[int, typer.Argument(help="Text message id.")]) -> None:
    """Queue a failed (or stuck) text message again; a sent one is refused.

    Example: studioctl sms retry 42
    """
    from models.db import session_scope
    from models.sms import get_sms, requeue_sms

    with session_scope() as session:
        requeue_sms(session, get_sms(session, sms_id))
    console.print(f"[green]SMS {sms_id} queued again[/]")
