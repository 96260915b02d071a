"""`studioctl locations`: the places the studio teaches at."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(
    help='Locations (places with rooms).\n\nExample: studioctl locations add --name Downtown --address "12 Main St"',
    no_args_is_help=True,
)


@app.command()
def add(
    name: Annotated[str, typer.Option(help="Its name, unique (no '/', not only digits).")],
    address: Annotated[str | None, typer.Option(help="Street address (shown in the families' calendars).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Add a location; its rooms come next (studioctl rooms add).

    Example: studioctl locations add --name Downtown --address "12 Main St, Springfield"
    """
    from models.db import session_scope
    from models.locations import add_location

    with session_scope() as session:
        location = add_location(session, name=name, address=address, actor="admin")
        row = {"id": location.id, "name": location.name, "address": location.address, "rooms": 0}
    if json_output:
        return emit_json(row)
    console.print(f"[green]added location[/] {row['name']} (id {row['id']})")


@app.command("list")
def list_(json_output: bool = JsonOption) -> None:
    """List locations with their address and how many rooms each has.

    Example: studioctl locations list --json
    """
    from models.db import session_scope
    from models.locations import list_locations

    with session_scope(write=False) as session:
        rows = list_locations(session)
    if json_output:
        return emit_json(rows)
    print_table(
        "Locations",
        ["id", "name", "address", "rooms"],
        [[r["id"], r["name"], r["address"] or "-", r["rooms"]] for r in rows],
        empty="no locations yet: studioctl locations add --name NAME",
    )
