"""`studioctl import`: a studio's existing roster from CSV, all or nothing."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, err_console, fail, print_table

SHOWN = 100  # rows of the table printed after an import

app = typer.Typer(
    help="Import a studio's data from CSV.\n\nExample: studioctl import roster roster.csv --dry-run", no_args_is_help=True
)


@app.callback()
def _group() -> None:
    """Import a studio's data from CSV.

    Example: studioctl import roster roster.csv --dry-run
    """


@app.command()
def roster(
    file: Annotated[Path, typer.Argument(help="The roster CSV (UTF-8; a header naming the columns).", dir_okay=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything and say what would be created; write nothing.")
    ] = False,
    json_output: bool = JsonOption,
) -> None:
    """Import a roster: one row per enrollment, columns
    family_email,family_name,phone,student,birth_date,instrument,teacher_email,weekday,time,plan,start_date.

    Teachers and instruments must exist; missing families (by email), students (by family and
    name) and slots (teacher, weekday mon…sun, time HH:MM) are created, and each enrollment is
    assigned as `enrollments assign` does (every rule and the audit apply): plan empty is offline
    and active at once (start_date may then be in the past); a plan (id or weekly, monthly,
    semester) is a provisional hold whose Stripe booking is queued. Leave the enrollment columns
    empty for a student (or student too for a family) without a slot. What exists is matched,
    never changed, so importing the same file again changes nothing. One bad row and nothing is
    imported: every bad row is listed with its line number, exit 1.

    Example: studioctl import roster roster.csv --dry-run
    Example: studioctl import roster roster.csv
    """
    from rich.progress import Progress

    from models.db import after_commit, session_scope
    from models.roster import RosterRefused, import_roster

    try:
        with open(file, encoding="utf-8-sig", newline="") as lines:
            with (
                session_scope() as session,
                Progress(console=console, transient=True, disable=json_output or not console.is_terminal) as bar,
            ):

                def start(description: str, total: int):
                    task = bar.add_task(description, total=total)
                    return lambda: bar.advance(task)

                result = import_roster(session, lines, actor="admin", dry_run=dry_run, progress=start)
                if result.provisional_ids:
                    from workers.tasks import book_enrollment

                    for enrollment_id in result.provisional_ids:
                        after_commit(session, functools.partial(book_enrollment, enrollment_id))
    except OSError as error:
        raise fail(f"cannot read {file}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise fail(f"{file} is not UTF-8 text") from None
    except csv.Error as error:  # a cell past the csv module's field size limit, a NUL byte...
        raise fail(f"{file} cannot be read as CSV: {error}") from None
    except RosterRefused as refused:
        for problem in refused.problems:
            err_console.print(f"line {problem.line}: {problem.reason}", highlight=False, soft_wrap=True, markup=False)
        raise fail(refused.detail) from None
    counts = {
        "families": result.families,
        "students": result.students,
        "timeslots": result.timeslots,
        "enrollments": result.enrollments,
        "unchanged": result.unchanged,
    }
    if json_output:
        return emit_json({"dry_run": dry_run, **counts, "rows": result.rows})
    verb = "would create" if dry_run else "created"
    console.print(
        f"[green]{'dry run: ' if dry_run else 'imported: '}{verb}[/] {result.families} family(ies), {result.students} student(s), "
        f"{result.timeslots} timeslot(s), {result.enrollments} enrollment(s); {result.unchanged} row(s) already there"
        + ("; nothing was written" if dry_run else ""),
        highlight=False,
        soft_wrap=True,
    )
    new = [
        [r["line"], r["family"], r["student"], r["slot"], r["plan"], ", ".join(r["creates"])] for r in result.rows if r["creates"]
    ]
    title = "Would create" if dry_run else "Created"
    print_table(title, ["line", "family", "student", "slot", "plan", "creates"], new[:SHOWN], empty="nothing new")
    if len(new) > SHOWN:  # a studio's whole roster is thousands of rows: the table shows the first
        console.print(f"[dim]… and {len(new) - SHOWN} more row(s); --json lists every row[/]")
