"""`studioctl teachers time-off`: a teacher away over some dates, with or without a substitute."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, parse_date, print_table, show_record

app = typer.Typer(
    help="A teacher's time off: their lessons then are cancelled (make-up credits) or taught by a substitute.\n\n"
    "Example: studioctl teachers time-off add --teacher ada@studio.example --from 2026-11-02 --to 2026-11-08 "
    "--substitute bob@studio.example",
    no_args_is_help=True,
)


@app.command()
def add(
    teacher: Annotated[str, typer.Option(help="The teacher away (id or email).")],
    from_: Annotated[str, typer.Option("--from", help="First day away, YYYY-MM-DD (today or later).")],
    to: Annotated[str, typer.Option("--to", help="Last day away, YYYY-MM-DD (included).")],
    substitute: Annotated[str | None, typer.Option(help="Who teaches the lessons instead (id or email).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the record (and the cancelled lessons' note).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Record a teacher's time off: their lessons then are cancelled, or taught by a substitute.

    Without --substitute every lesson then (weekly ones and booked make-ups) is cancelled:
    teacher_cancelled, one make-up credit and one invite each. With one, the lessons take
    place with the substitute and each family is told; the substitute must teach each
    lesson's instrument and be free at its time, else nothing changes and the conflicts are
    listed. Overlapping time off of the teacher is refused.

    Example: studioctl teachers time-off add --teacher ada@studio.example --from 2026-11-02 --to 2026-11-08 --reason "flu"
    """
    from models.db import session_scope
    from models.substitutes import add_time_off, time_off_view

    starts_on, ends_on = parse_date(from_, field="from"), parse_date(to, field="to")
    with session_scope() as session:
        result = add_time_off(
            session, teacher=teacher, starts_on=starts_on, ends_on=ends_on, substitute=substitute, reason=reason, actor="admin"
        )
        view = time_off_view(session, result.time_off) | {
            "cancelled": [lesson.label for lesson in result.cancelled],
            "covered": [lesson.label for lesson in result.covered],
        }
    if json_output:
        return emit_json(view)
    if view["substitute"]:
        verb = f"{view['substitute_name']} teaches {len(view['covered'])} lesson(s) of {view['teacher_name']}"
    else:
        verb = f"cancelled {len(view['cancelled'])} lesson(s) of {view['teacher_name']} (make-up credits sent)"
    show_record("Time off", view, False, verb)


@app.command("list")
def list_(
    teacher: Annotated[str | None, typer.Option(help="Only this teacher's (id or email).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include time off that is over.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """List time off not over yet (--all: every one), by first day.

    Example: studioctl teachers time-off list --teacher ada@studio.example --all
    """
    from models.db import session_scope
    from models.substitutes import list_time_off, time_off_view

    with session_scope(write=False) as session:
        rows = [time_off_view(session, row) for row in list_time_off(session, teacher=teacher, include_past=all_)]
    if json_output:
        return emit_json(rows)
    print_table(
        "Time off",
        ["id", "teacher", "from", "to", "substitute", "reason"],
        [[r["id"], r["teacher_name"], r["from"], r["to"], r["substitute_name"] or "none (cancelled)", r["reason"]] for r in rows],
        empty="no time off",
    )


@app.command()
def remove(time_off_id: Annotated[int, typer.Argument(help="Time off id (`time-off list`).")]) -> None:
    """Remove a time off that has not begun.

    One with a substitute is undone (its make-ups go back to the slot's teacher); one without
    a substitute that cancelled lessons cannot be removed (the families hold the credits:
    `attendance mark` a lesson that takes place after all).

    Example: studioctl teachers time-off remove 3
    """
    from models.db import session_scope
    from models.substitutes import remove_time_off

    with session_scope() as session:
        row = remove_time_off(session, time_off_id, actor="admin")
    console.print(f"[green]removed time off {row.id}[/] ({row.starts_on} to {row.ends_on})")
