"""`studioctl seed`: the standard instruments, and a believable demo studio."""

from __future__ import annotations

import typer

from studioctl.common import console

app = typer.Typer(help="Seed data. Example: studioctl seed demo", no_args_is_help=True)


@app.command()
def instruments() -> None:
    """Make sure piano, guitar, drums and bass exist (safe to run again).

    Example: studioctl seed instruments
    """
    from models.db import session_scope
    from models.people import seed_instruments

    with session_scope() as session:
        created = [instrument.name for instrument in seed_instruments(session, actor="admin")]
    console.print(f"[green]instruments seeded[/] ({', '.join(created) if created else 'all present already'})")


@app.command()
def demo(
    seed: int = typer.Option(42, help="Random seed (the same seed gives the same studio)."),
    skip_if_seeded: bool = typer.Option(
        False, "--skip-if-seeded", help="Exit 0 without changes when the studio already has teachers."
    ),
) -> None:
    """Fill an empty database with a believable studio: 4 teachers, ~60 slots, 2 semesters
    with closures, 3 plans, 20 families, 30 students, enrollments and some attendance.

    Refuses (exit 1) when the studio already has teachers, unless --skip-if-seeded.

    Example: studioctl seed demo --skip-if-seeded
    """
    from rich.progress import Progress

    from models.clock import studio_today
    from models.db import session_scope
    from models.seed import DEMO_STAGES, ensure_studio_empty, seed_demo_studio, studio_has_teachers

    today = studio_today()
    with session_scope() as session:
        if skip_if_seeded and studio_has_teachers(session):
            console.print("[dim]the studio already has teachers; demo seed skipped[/]")
            return
        ensure_studio_empty(session)  # refused before the progress bar shows
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("seeding the demo studio", total=len(DEMO_STAGES))
            made = seed_demo_studio(session, today=today, seed=seed, actor="admin", advance=lambda: progress.advance(task))
    console.print(
        f"[green]demo studio seeded[/]: {made['teachers']} teachers, {made['slots']} slots, {made['semesters']} semesters, "
        f"{made['families']} families, {made['students']} students, {made['enrollments']} enrollments, "
        f"{made['attendance_marks']} attendance marks"
    )
