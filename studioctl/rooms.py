"""`studioctl rooms`: the rooms of each location, where timeslots are taught."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(
    help='Rooms of the locations; a timeslot names one as Location/Room.\n\nExample: studioctl rooms add --location Downtown --name "Room 2"',
    no_args_is_help=True,
)

LocationOption = Annotated[str, typer.Option(help="Location name or id.")]


@app.command()
def add(
    location: LocationOption,
    name: Annotated[str, typer.Option(help="Room name, unique in its location.")],
    json_output: bool = JsonOption,
) -> None:
    """Add a room to a location. Timeslots then name it `Location/Room` (or its id) with --room.

    Example: studioctl rooms add --location Downtown --name "Room 2"
    """
    from models.db import session_scope
    from models.locations import add_room, get_location, room_view

    with session_scope() as session:
        room = add_room(session, location=get_location(session, location), name=name, actor="admin")
        view = room_view(session, room)
    if json_output:
        return emit_json(view)
    console.print(f"[green]added room[/] {view['label']} (id {view['id']})")


@app.command("list")
def list_(
    location: Annotated[str | None, typer.Option(help="Only this location's rooms (name or id).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """List rooms by location, with the name --room takes and how many timeslots each holds.

    Example: studioctl rooms list --location Downtown
    """
    from models.db import session_scope
    from models.locations import get_location
    from models.reports import list_rooms

    with session_scope(write=False) as session:
        rows = list_rooms(session, location=get_location(session, location) if location else None)
    if json_output:
        return emit_json(rows)
    print_table(
        "Rooms",
        ["id", "location", "room", "--room", "timeslots"],
        [[r["id"], r["location"], r["name"], r["label"], r["timeslots"]] for r in rows],
        empty="no rooms yet: studioctl rooms add --location NAME --name ROOM",
    )
