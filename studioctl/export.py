"""`studioctl export`: any table to CSV, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from studioctl.common import console


def export(
    table: Annotated[str, typer.Argument(help="Table name, e.g. enrollment, audit_log (unknown: the list is shown).")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.", dir_okay=False)],
) -> None:
    """Export every row of a table to CSV.

    Dates are ISO 8601, JSON columns JSON text; rows are ordered by primary key.

    Example: studioctl export enrollment --out enrollments.csv
    """
    from rich.progress import Progress

    from models.db import session_scope
    from models.reports import export_rows, table_names

    if table not in table_names():
        from models.errors import Invalid

        raise Invalid(f"no table {table!r}; choose one of {', '.join(table_names())}", field="table")
    with session_scope(write=False) as session, Progress(console=console, transient=True) as progress:
        written = export_rows(
            session,
            table,
            out,
            progress=lambda total: progress.add_task(f"exporting {table}", total=total),
            advance=lambda task: progress.advance(task),
        )
    console.print(f"[green]exported {written} row(s)[/] of {table} to {out}")


def register(app: typer.Typer) -> None:
    """Add `export` to the root app."""
    app.command("export")(export)
