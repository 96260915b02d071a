"""`studioctl jobs`: the periodic jobs, listed or run now (admins and tests don't wait for the clock)."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Periodic jobs.\n\nExample: studioctl jobs run expire_provisional_holds", no_args_is_help=True)


@app.command("list")
def list_(json_output: bool = JsonOption) -> None:
    """List the periodic jobs and when the worker runs them.

    Example: studioctl jobs list
    """
    from workers.periodic import JOBS

    rows = [{"name": job.name, "schedule": job.schedule, "what": job.help} for job in JOBS.values()]
    if json_output:
        return emit_json(rows)
    print_table("Periodic jobs", ["name", "schedule", "what"], [[r["name"], r["schedule"], r["what"]] for r in rows])


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Job name (see `studioctl jobs list`).")], json_output: bool = JsonOption
) -> None:
    """Run one periodic job now, under the lock the worker uses (safe to run twice).

    Example: studioctl jobs run reconcile_bookings
    """
    from huey.exceptions import TaskLockedException

    from models.errors import Conflict, NotFound
    from workers.periodic import JOBS, run_job

    name = name.strip().replace("-", "_")
    if name not in JOBS:
        raise NotFound(f"no job {name!r}; one of: {', '.join(JOBS)}")
    try:
        result = run_job(name)
    except TaskLockedException:
        raise Conflict(f"{name} is running right now (the worker holds its lock)") from None
    if json_output:
        return emit_json({"job": name, "result": result})
    console.print(f"[green]{name}[/]: {result}")
