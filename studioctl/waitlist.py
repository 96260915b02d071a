"""`studioctl waitlist`: the families waiting for a slot (issue 14)."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="The waiting list for slots.\n\nExample: studioctl waitlist list --instrument piano", no_args_is_help=True)


@app.command("list")
def list_(
    instrument: Annotated[str | None, typer.Option(help="Only entries for this instrument.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include booked and removed entries.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """List open entries, oldest first (the order freed slots are offered in).

    Example: studioctl waitlist list --instrument piano --json
    """
    from models import waitlist
    from models.db import session_scope

    with session_scope(write=False) as session:
        rows = [
            waitlist.entry_view(session, entry)
            for entry in waitlist.list_entries(session, instrument=instrument, status=None if all_ else waitlist.OPEN)
        ]
    if json_output:
        return emit_json(rows)
    print_table(
        "Waiting list",
        ["id", "student", "instrument", "teacher", "weekdays", "from", "to", "status", "since"],
        [
            [
                r["id"],
                r["student_id"],
                r["instrument"],
                r["teacher_id"] or "any",
                ",".join(map(str, r["weekdays"])) if r["weekdays"] else "any",
                r["earliest"] or "-",
                r["latest"] or "-",
                r["status"],
                r["created_at"],
            ]
            for r in rows
        ],
        empty="nobody is waiting",
    )


@app.command()
def remove(entry_id: Annotated[int, typer.Argument(help="Waiting-list entry id.")]) -> None:
    """Take an entry off the waiting list.

    Example: studioctl waitlist remove 4
    """
    from models import waitlist
    from models.db import session_scope

    with session_scope() as session:
        waitlist.remove_entry(session, waitlist.get_entry(session, entry_id), actor="admin")
    console.print(f"[green]waiting-list entry {entry_id} removed[/]")
