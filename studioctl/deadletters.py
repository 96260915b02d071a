"""`studioctl deadletters`: jobs that failed for good; replay or resolve them."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Dead letters (failed jobs).\n\nExample: studioctl deadletters list", no_args_is_help=True)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include resolved ones.")] = False, json_output: bool = JsonOption
) -> None:
    """List open dead letters, newest first.

    Example: studioctl deadletters list --all --json
    """
    from models.db import session_scope
    from models.outbox import list_dead_letters

    with session_scope(write=False) as session:
        rows = list_dead_letters(session, include_resolved=all_)
    if json_output:
        return emit_json(rows)
    print_table(
        "Dead letters",
        ["id", "kind", "payload", "error", "created", "resolved"],
        [[r["id"], r["kind"], r["payload"], r["error"][:70], r["created_at"], r["resolved_at"] or "-"] for r in rows],
        empty="no dead letters",
    )


@app.command()
def retry(letter_id: Annotated[int, typer.Argument(help="Dead letter id.")]) -> None:
    """Replay the failed job (emails, Stripe events, subscription cancellations).

    Example: studioctl deadletters retry 3
    """
    from models.db import session_scope
    from models.outbox import dead_letter_row, get_dead_letter, mark_dead_letter_retried
    from workers.tasks import replay_dead_letter

    with session_scope(write=False) as session:
        letter = dead_letter_row(session, letter_id=letter_id)
    message = replay_dead_letter(kind=letter["kind"], payload=letter["payload"])
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
