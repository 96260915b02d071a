"""`studioctl semesters`: terms, their make-up windows and closure dates."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from studioctl.common import JsonOption, emit_json, parse_date, print_table, show_record

app = typer.Typer(help="Semesters, make-up windows and closures.\n\nExample: studioctl semesters list", no_args_is_help=True)
closures_app = typer.Typer(
    help="Closure dates (no lessons, not billed).\n\nExample: studioctl semesters closures add 2 2026-11-26", no_args_is_help=True
)
app.add_typer(closures_app, name="closures")

SemesterId = Annotated[int, typer.Argument(help="Semester id.")]
DateArgument = Annotated[str, typer.Argument(help="YYYY-MM-DD.")]


_show = functools.partial(show_record, "Semester")


@app.command("list")
def list_(json_output: bool = JsonOption) -> None:
    """List semesters with their make-up windows and number of closures.

    Example: studioctl semesters list --json
    """
    from models.db import session_scope
    from models.reports import list_semesters

    with session_scope(write=False) as session:
        rows = list_semesters(session)
    if json_output:
        return emit_json(rows)
    print_table(
        "Semesters",
        ["id", "name", "lessons", "make-ups", "closures"],
        [
            [
                r["id"],
                r["name"],
                f"{r['starts_on']} → {r['ends_on']}",
                f"{r['makeup_starts_on']} → {r['makeup_ends_on']}",
                len(r["closures"]),
            ]
            for r in rows
        ],
        empty="no semesters yet: studioctl semesters add ...",
    )


@app.command()
def add(
    name: Annotated[str, typer.Option(help="Unique name, e.g. 'Fall 2026'.")],
    starts: Annotated[str, typer.Option(help="First lesson day YYYY-MM-DD.")],
    ends: Annotated[str, typer.Option(help="Last lesson day YYYY-MM-DD.")],
    makeup_starts: Annotated[str | None, typer.Option(help="Make-up window start (default: --starts).")] = None,
    makeup_ends: Annotated[str | None, typer.Option(help="Make-up window end (default: --ends).")] = None,
    closure: Annotated[list[str] | None, typer.Option(help="A closure date (repeat the option).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Add a semester; refused when its dates overlap another one.

    Example: studioctl semesters add --name "Fall 2026" --starts 2026-09-07 --ends 2026-12-19 --closure 2026-11-26
    """
    from models.db import session_scope
    from models.reports import semester_view
    from models.terms import add_semester

    dates = dict(
        starts_on=parse_date(starts, field="starts"),
        ends_on=parse_date(ends, field="ends"),
        makeup_starts_on=parse_date(makeup_starts, field="makeup_starts") if makeup_starts else None,
        makeup_ends_on=parse_date(makeup_ends, field="makeup_ends") if makeup_ends else None,
        closures=[parse_date(day, field="closure") for day in closure or []],
    )
    with session_scope() as session:
        view = semester_view(session, add_semester(session, name=name, actor="admin", **dates))
    _show(view, json_output, "added semester")


@app.command()
def show(semester: SemesterId, json_output: bool = JsonOption) -> None:
    """Show a semester with its closure dates.

    Example: studioctl semesters show 1
    """
    from models.db import session_scope
    from models.reports import semester_view
    from models.scheduling import get_semester

    with session_scope(write=False) as session:
        view = semester_view(session, get_semester(session, semester))
    _show(view, json_output)


@closures_app.command("add")
def closures_add(
    semester: SemesterId,
    day: DateArgument,
    reason: Annotated[str | None, typer.Option(help="Why the studio is closed.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Close the studio on a date of the semester (no lessons, not billed).

    Example: studioctl semesters closures add 1 2026-11-26 --reason Thanksgiving
    """
    from models.db import session_scope
    from models.reports import semester_view
    from models.scheduling import get_semester
    from models.terms import add_closure

    closed_on = parse_date(day)
    with session_scope() as session:
        row = get_semester(session, semester)
        add_closure(session, semester=row, closed_on=closed_on, reason=reason, actor="admin")
        view = semester_view(session, row)
    _show(view, json_output, f"closed on {closed_on}")


@closures_app.command("remove")
def closures_remove(semester: SemesterId, day: DateArgument, json_output: bool = JsonOption) -> None:
    """Reopen a closed date of the semester.

    Example: studioctl semesters closures remove 1 2026-11-26
    """
    from models.db import session_scope
    from models.reports import semester_view
    from models.scheduling import get_semester
    from models.terms import remove_closure

    closed_on = parse_date(day)
    with session_scope() as session:
        row = get_semester(session, semester)
        remove_closure(session, semester=row, closed_on=closed_on, actor="admin")
        view = semester_view(session, row)
    _show(view, json_output, f"reopened {closed_on}")
