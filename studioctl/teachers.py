"""`studioctl teachers`: who teaches, what, and whether they take new bookings."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from studioctl import time_off
from studioctl.common import JsonOption, emit_json, print_table, show_record

app = typer.Typer(help="Teachers (referred to by id or email).\n\nExample: studioctl teachers list --all", no_args_is_help=True)
app.add_typer(time_off.app, name="time-off")

TeacherRef = Annotated[str, typer.Argument(help="Teacher id or email.")]


_show = functools.partial(show_record, "Teacher")


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include deactivated teachers.")] = False, json_output: bool = JsonOption
) -> None:
    """List teachers with their instruments and number of active slots.

    Example: studioctl teachers list --all
    """
    from models.db import session_scope
    from models.reports import list_teachers

    with session_scope(write=False) as session:
        rows = list_teachers(session, include_inactive=all_)
    if json_output:
        return emit_json(rows)
    print_table(
        "Teachers",
        ["id", "name", "email", "instruments", "slots", "status"],
        [
            [r["id"], r["name"], r["email"], ", ".join(r["instruments"]), r["slots"], "active" if r["active"] else "inactive"]
            for r in rows
        ],
        empty="no teachers yet: studioctl teachers add --name ... --email ...",
    )


@app.command()
def add(
    name: Annotated[str, typer.Option(help="Full name.")],
    email: Annotated[str, typer.Option(help="Email (unique).")],
    instrument: Annotated[list[str] | None, typer.Option(help="An instrument taught (repeat the option).")] = None,
    bio: Annotated[str | None, typer.Option(help="Short biography shown to parents.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Add a teacher.

    Example: studioctl teachers add --name "Ada Lovelace" --email ada@studio.example --instrument piano
    """
    from models.db import session_scope
    from models.people import add_teacher
    from models.reports import teacher_view

    with session_scope() as session:
        teacher = add_teacher(session, name=name, email=email, instruments=instrument or [], bio=bio, actor="admin")
        view = teacher_view(session, teacher)
    _show(view, json_output, "added teacher")


@app.command()
def show(teacher: TeacherRef, json_output: bool = JsonOption) -> None:
    """Show one teacher.

    Example: studioctl teachers show ada@studio.example
    """
    from models.db import session_scope
    from models.people import get_teacher
    from models.reports import teacher_view

    with session_scope(write=False) as session:
        view = teacher_view(session, get_teacher(session, teacher))
    _show(view, json_output, "")


@app.command()
def update(
    teacher: TeacherRef,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    email: Annotated[str | None, typer.Option(help="New email.")] = None,
    bio: Annotated[str | None, typer.Option(help="New biography.")] = None,
    instrument: Annotated[list[str] | None, typer.Option(help="Replaces the instruments taught (repeat).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Change a teacher's name, email, bio or instruments (given instruments replace the list).

    Example: studioctl teachers update 3 --instrument piano --instrument guitar
    """
    if name is None and email is None and bio is None and instrument is None:
        raise typer.BadParameter("give at least one of --name, --email, --bio, --instrument")
    _change(teacher, json_output, "updated teacher", name=name, email=email, bio=bio, instruments=instrument)


@app.command()
def deactivate(teacher: TeacherRef, json_output: bool = JsonOption) -> None:
    """Stop new bookings with a teacher (running enrollments and history stay).

    Example: studioctl teachers deactivate ada@studio.example
    """
    _change(teacher, json_output, "deactivated teacher", active=False)


@app.command()
def activate(teacher: TeacherRef, json_output: bool = JsonOption) -> None:
    """Let a deactivated teacher take bookings again.

    Example: studioctl teachers activate ada@studio.example
    """
    _change(teacher, json_output, "activated teacher", active=True)


@app.command("set-rate")
def set_rate(
    teacher: TeacherRef,
    per_lesson: Annotated[str, typer.Option("--per-lesson", help="Pay per lesson taught, e.g. 25.00 (the studio's currency).")],
    json_output: bool = JsonOption,
) -> None:
    """Set what a teacher is paid per lesson taught (`studioctl payroll` multiplies by it).

    Example: studioctl teachers set-rate ada@studio.example --per-lesson 25.00
    """
    from models.db import session_scope
    from models.payroll import set_teacher_rate
    from models.people import get_teacher
    from models.reports import teacher_view

    with session_scope() as session:
        row = set_teacher_rate(session, get_teacher(session, teacher), per_lesson=per_lesson, actor="admin")
        view = teacher_view(session, row)
    _show(view, json_output, f"rate per lesson: {row.rate_cents / 100:.2f}" if row.rate_cents is not None else "")


def _change(ref: str, json_output: bool, verb: str, **changes) -> None:
    from models.db import session_scope
    from models.people import get_teacher, update_teacher
    from models.reports import teacher_view

    with session_scope() as session:
        row = update_teacher(session, get_teacher(session, ref), actor="admin", **changes)
        view = teacher_view(session, row)
    _show(view, json_output, verb)
