"""`studioctl students`: the children who take lessons."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, parse_date, print_table, show_record

app = typer.Typer(help="Students (by id).\n\nExample: studioctl students list --payee sam@family.example", no_args_is_help=True)

StudentId = Annotated[int, typer.Argument(help="Student id.")]


_show = functools.partial(show_record, "Student")


@app.command("list")
def list_(
    payee: Annotated[str | None, typer.Option(help="Only this payee's students (id or email).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """List current students, optionally one family's.

    Example: studioctl students list --payee 3
    """
    from models.db import session_scope
    from models.people import get_payee
    from models.reports import list_students

    with session_scope(write=False) as session:
        payee_id = get_payee(session, payee).id if payee else None
        rows = list_students(session, payee_id=payee_id)
    if json_output:
        return emit_json(rows)
    print_table(
        "Students",
        ["id", "name", "payee", "birth date", "notes"],
        [[r["id"], r["name"], r["payee"], r["birth_date"], r["notes"]] for r in rows],
        empty="no students",
    )


@app.command()
def add(
    payee: Annotated[str, typer.Option(help="The paying parent (id or email).")],
    name: Annotated[str, typer.Option(help="Student's name.")],
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free notes for the teacher.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Add a student to a family.

    Example: studioctl students add --payee sam@family.example --name "Mia Garcia" --birth-date 2016-04-02
    """
    from models.db import session_scope
    from models.people import add_student, get_payee
    from models.reports import student_view

    born = parse_date(birth_date, field="birth_date") if birth_date else None
    with session_scope() as session:
        student = add_student(session, payee=get_payee(session, payee), name=name, birth_date=born, notes=notes, actor="admin")
        view = student_view(session, student)
    _show(view, json_output, "added student")


@app.command()
def show(student: StudentId, json_output: bool = JsonOption) -> None:
    """Show one student.

    Example: studioctl students show 12
    """
    from models.db import session_scope
    from models.people import get_student
    from models.reports import student_view

    with session_scope(write=False) as session:
        view = student_view(session, get_student(session, student))
    _show(view, json_output)


@app.command()
def update(
    student: StudentId,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; empty string clears it.")] = None,
    notes: Annotated[str | None, typer.Option(help="New notes; empty string clears them.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Change a student's name, birth date or notes.

    Example: studioctl students update 12 --notes "prepping a recital"
    """
    from models.db import session_scope
    from models.people import get_student, update_student
    from models.reports import student_view

    if name is None and birth_date is None and notes is None:
        raise typer.BadParameter("give at least one of --name, --birth-date, --notes")
    changes: dict = {}
    if birth_date is not None:
        changes["birth_date"] = parse_date(birth_date, field="birth_date") if birth_date.strip() else None
    if notes is not None:
        changes["notes"] = notes or None
    with session_scope() as session:
        row = update_student(session, get_student(session, student), name=name, actor="admin", **changes)
        view = student_view(session, row)
    _show(view, json_output, "updated student")


@app.command()
def remove(student: StudentId) -> None:
    """Remove (archive) a student; refused while they hold a live enrollment. History is kept.

    Example: studioctl students remove 12
    """
    from models.db import session_scope
    from models.enrollment import archive_student
    from models.people import get_student

    with session_scope() as session:
        row = archive_student(session, get_student(session, student), actor="admin")
        name = row.name
    console.print(f"[yellow]removed student[/] {name} (id {student})")
