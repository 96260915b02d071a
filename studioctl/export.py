"""`studioctl export`: any table, or the roster in the shape `studioctl import roster` reads, to CSV."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from studioctl.common import console, fail

ROSTER = "roster"


def export(
    table: Annotated[
        str, typer.Argument(help="Table name, e.g. enrollment, audit_log (unknown: the list is shown), or `roster`.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="CSV file to write (required for a table; the roster goes to stdout without it).", dir_okay=False
        ),
    ] = None,
) -> None:
    """Export every row of a table to CSV, or the roster.

    Dates are ISO 8601, JSON columns JSON text; rows are ordered by primary key. `roster` is
    what `studioctl import roster` reads: a row per live enrollment (plus the students without
    one and the families without students), so importing it again changes nothing.

    Example: studioctl export enrollment --out enrollments.csv
    Example: studioctl export roster --out roster.csv
    """
    try:
        _export(table, out)
    except OSError as error:  # a missing folder, a full disk, no permission
        raise fail(f"cannot write {out}: {error.strerror or error}") from None


def _export(table: str, out: Path | None) -> None:
    from models.db import session_scope

    if table == ROSTER:
        return _export_roster(out)
    if out is None:
        raise fail("--out FILE is required to export a table")
    from rich.progress import Progress

    from models.reports import export_rows, table_names

    if table not in table_names():
        from models.errors import Invalid

        raise Invalid(f"no table {table!r}; choose one of {', '.join(table_names())} (or roster)", field="table")
    with session_scope(write=False) as session, Progress(console=console, transient=True) as progress:
        written = export_rows(
            session,
            table,
            out,
            progress=lambda total: progress.add_task(f"exporting {table}", total=total),
            advance=lambda task: progress.advance(task),
        )
    console.print(f"[green]exported {written} row(s)[/] of {table} to {out}")


def _export_roster(out: Path | None) -> None:
    from models.db import session_scope
    from models.roster_export import export_roster

    if out is None:
        with session_scope(write=False) as session:
            export_roster(session, sys.stdout)
        return
    with open(out, "w", newline="", encoding="utf-8") as file, session_scope(write=False) as session:
        written = export_roster(session, file)
    console.print(f"[green]exported {written} roster row(s)[/] to {out}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `export` to the root app."""
    app.command("export")(export)
