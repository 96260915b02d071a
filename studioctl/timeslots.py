"""`studioctl timeslots`: teachers' weekly 30-minute slots."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(
    help="Weekly 30-minute timeslots.\n\nExample: studioctl timeslots list --teacher ada@studio.example --available",
    no_args_is_help=True,
)

TeacherOption = Annotated[str, typer.Option(help="Teacher id or email.")]
WeekdayOption = Annotated[str, typer.Option(help="mon…sun or 0–6 (0 = Monday).")]
RoomOption = Annotated[
    str | None,
    typer.Option(
        help='The room its lessons are in: "Location/Room" (e.g. "Downtown/Room 2", any case) or the room id '
        "(studioctl rooms list). The room is then held at that weekday and time."
    ),
]


def _rows(rows: list[dict]) -> list[list]:
    return [
        [
            r["id"],
            r["teacher"],
            r["weekday"].title(),
            r["start"],
            r["room"] or "-",
            "active" if r["active"] else "inactive",
            "free" if r["available"] else (f"enrollment {r['enrollment_id']}" if r["enrollment_id"] else "-"),
        ]
        for r in rows
    ]


COLUMNS = ["id", "teacher", "day", "start", "room", "status", "booking"]


@app.command("list")
def list_(
    teacher: Annotated[str | None, typer.Option(help="Only this teacher's slots (id or email).")] = None,
    weekday: Annotated[str | None, typer.Option(help="Only this weekday (mon…sun or 0–6).")] = None,
    available: Annotated[bool, typer.Option("--available", help="Only slots that can be booked now.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """List slots by teacher, day and time, with who holds them.

    Example: studioctl timeslots list --weekday mon --available
    """
    from models.db import session_scope
    from models.people import get_teacher
    from models.reports import list_timeslots
    from models.scheduling import parse_weekday

    day = parse_weekday(weekday) if weekday is not None else None
    with session_scope(write=False) as session:
        teacher_id = get_teacher(session, teacher).id if teacher else None
        rows = list_timeslots(session, teacher_id=teacher_id, weekday=day, available=available)
    if json_output:
        return emit_json(rows)
    print_table("Timeslots", COLUMNS, _rows(rows), empty="no timeslots match")


@app.command()
def add(
    teacher: TeacherOption,
    weekday: WeekdayOption,
    at: Annotated[str, typer.Option("--at", help="Start time HH:MM (on the half hour).")],
    room: RoomOption = None,
    json_output: bool = JsonOption,
) -> None:
    """Add one 30-minute slot; refused when the teacher already has it, or the room is taken then.

    Example: studioctl timeslots add --teacher ada@studio.example --weekday tue --at 16:30 --room "Downtown/Room 2"
    """
    from models.db import session_scope
    from models.locations import get_room
    from models.people import get_teacher
    from models.reports import timeslot_view
    from models.scheduling import add_timeslot, parse_hhmm, parse_weekday

    day, minute = parse_weekday(weekday), parse_hhmm(at)
    with session_scope() as session:
        teacher_row = get_teacher(session, teacher)
        room_row = get_room(session, room) if room is not None else None
        slot = add_timeslot(session, teacher=teacher_row, weekday=day, start_minute=minute, actor="admin", room=room_row)
        view = timeslot_view(session, slot)
    if json_output:
        return emit_json(view)
    where = f" in {view['room']}" if view["room"] else ""
    console.print(f"[green]added timeslot[/] {view['id']}: {view['teacher']} {view['weekday'].title()} {view['start']}{where}")


@app.command()
def publish(
    teacher: TeacherOption,
    weekday: WeekdayOption,
    from_: Annotated[str, typer.Option("--from", help="First start time HH:MM.")],
    to: Annotated[str, typer.Option("--to", help="End of the range HH:MM (the last slot ends here).")],
    room: RoomOption = None,
    json_output: bool = JsonOption,
) -> None:
    """Make the 30-minute slots of a weekday range (in a room with --room: refused, nothing made,
    when the room is taken at one of the times); the teacher's existing ones are skipped.

    Example: studioctl timeslots publish --teacher ada@studio.example --weekday mon --from 15:00 --to 18:00 --room Downtown/Studio
    """
    from rich.progress import Progress

    from models.db import session_scope
    from models.locations import get_room
    from models.people import get_teacher
    from models.reports import timeslot_view
    from models.scheduling import SLOT_MINUTES, parse_hhmm, parse_weekday, publish_timeslots

    day, first, last = parse_weekday(weekday), parse_hhmm(from_), parse_hhmm(to)
    with session_scope() as session:
        teacher_row = get_teacher(session, teacher)
        room_row = get_room(session, room) if room is not None else None
        with Progress(console=console, transient=True, disable=json_output) as progress:
            task = progress.add_task("publishing slots", total=max(0, (last - first) // SLOT_MINUTES))
            created, skipped = publish_timeslots(
                session,
                teacher=teacher_row,
                weekday=day,
                from_minute=first,
                to_minute=last,
                actor="admin",
                room=room_row,
                progress=lambda step: progress.advance(task, step),
            )
        result = {
            "created": [timeslot_view(session, slot) for slot in created],
            "skipped": [timeslot_view(session, slot) for slot in skipped],
        }
    if json_output:
        return emit_json(result)
    console.print(f"[green]published {len(created)} slot(s)[/], skipped {len(skipped)} existing")
    print_table("Created", COLUMNS, _rows(result["created"]), empty="no new slots")


@app.command()
def room(
    timeslot_id: Annotated[int, typer.Argument(help="Timeslot id.")],
    room: RoomOption = None,
    no_room: Annotated[bool, typer.Option("--no-room", help="Say no room for it.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """Put an existing slot in a room (refused when the room is taken then), or take it out with
    --no-room; its bookings go on, and the families' calendars say the new place.

    Example: studioctl timeslots room 17 --room "Downtown/Room 2"
    """
    from models.db import session_scope
    from models.errors import Invalid
    from models.locations import get_room
    from models.reports import timeslot_view
    from models.scheduling import get_timeslot, set_timeslot_room

    if (room is None) == (not no_room):
        raise Invalid("give --room Location/Room (or its id), or --no-room", field="room")
    with session_scope() as session:
        slot = get_timeslot(session, timeslot_id)
        room_row = get_room(session, room) if room is not None else None
        view = timeslot_view(session, set_timeslot_room(session, slot, room=room_row, actor="admin"))
    if json_output:
        return emit_json(view)
    where = f"in {view['room']}" if view["room"] else "without a room"
    console.print(f"[green]timeslot {view['id']}[/] ({view['teacher']} {view['weekday'].title()} {view['start']}) is {where}")


def _set_active(timeslot_id: int, active: bool, json_output: bool) -> None:
    from models.db import session_scope
    from models.reports import timeslot_view
    from models.scheduling import get_timeslot, set_timeslot_active

    with session_scope() as session:
        slot = set_timeslot_active(session, get_timeslot(session, timeslot_id), active=active, actor="admin")
        view = timeslot_view(session, slot)
    if json_output:
        return emit_json(view)
    state = "[green]activated[/]" if active else "[yellow]deactivated[/]"
    console.print(f"{state} timeslot {view['id']} ({view['teacher']} {view['weekday'].title()} {view['start']})")


@app.command()
def deactivate(timeslot_id: Annotated[int, typer.Argument(help="Timeslot id.")], json_output: bool = JsonOption) -> None:
    """Take a slot off the grid for new bookings (a running enrollment keeps it).

    Example: studioctl timeslots deactivate 17
    """
    _set_active(timeslot_id, False, json_output)


@app.command()
def activate(timeslot_id: Annotated[int, typer.Argument(help="Timeslot id.")], json_output: bool = JsonOption) -> None:
    """Open a deactivated slot for bookings again.

    Example: studioctl timeslots activate 17
    """
    _set_active(timeslot_id, True, json_output)
