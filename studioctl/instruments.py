"""`studioctl instruments`: the instruments the studio teaches."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Instruments taught at the studio.\n\nExample: studioctl instruments list", no_args_is_help=True)


@app.command("list")
def list_(json_output: bool = JsonOption) -> None:
    """List instruments and how many teachers teach each.

    Example: studioctl instruments list --json
    """
    from models.db import session_scope
    from models.reports import list_instruments

    with session_scope(write=False) as session:
        rows = list_instruments(session)
    if json_output:
        return emit_json(rows)
    print_table(
        "Instruments",
        ["id", "name", "teachers"],
        [[r["id"], r["name"], r["teachers"]] for r in rows],
        empty="no instruments yet: studioctl seed instruments",
    )


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Instrument name (stored lower-case).")], json_output: bool = JsonOption
) -> None:
    """Add an instrument.

    Example: studioctl instruments add cello
    """
    from models.db import session_scope
    from models.people import add_instrument

    with session_scope() as session:
        instrument = add_instrument(session, name=name, actor="admin")
        row = {"id": instrument.id, "name": instrument.name, "teachers": 0}
    if json_output:
        return emit_json(row)
    console.print(f"[green]added instrument[/] {row['name']} (id {row['id']})")


@app.command()
def remove(name: Annotated[str, typer.Argument(help="Instrument name.")]) -> None:
    """Remove an instrument no teacher teaches and no enrollment has used.

    Example: studioctl instruments remove cello
    """
    from models.db import session_scope
    from models.people import remove_instrument

    with session_scope() as session:
        remove_instrument(session, name=name, actor="admin")
    console.print(f"[yellow]removed instrument[/] {name.strip().lower()}")
