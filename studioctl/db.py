"""`studioctl db`: apply, roll back and show the schema version (Alembic)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from studioctl.common import console, fail

app = typer.Typer(help="Schema migrations (Alembic). Example: studioctl db upgrade", no_args_is_help=True)


def _config():
    from migrations import alembic_config
    from models.config import get_settings

    return alembic_config(get_settings().DATABASE_URL)


def _current(config) -> tuple[str, ...]:
    """The database's revision(s); () for a database never migrated (or no SQLite file yet)."""
    from alembic.runtime.migration import MigrationContext

    from models.db import get_engine

    with get_engine().connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def _where(config) -> str:
    return ", ".join(_current(config)) or "base (no tables)"


def _refuse_unknown_revision(config) -> None:
    """A database migrated by a newer release: these migrations cannot move it, say so in one line."""
    from alembic.script import ScriptDirectory

    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    unknown = [revision for revision in _current(config) if revision not in known]
    if unknown:
        raise fail(
            f"the database is at revision {unknown[0]}, which these migrations do not know "
            "(migrated by a newer release?): run that release's studioctl, or restore a backup"
        )


def _run(step, config, revision: str) -> None:
    from alembic.util import CommandError

    try:
        step(config, revision)
    except CommandError as error:  # an unknown target, `-1` below base...
        raise fail(f"{str(error).strip().splitlines()[0]} (see studioctl db current)") from None


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database up to REVISION (default: head). Creates a SQLite file that does not
    exist yet (the only command that does).

    Example: studioctl db upgrade
    """
    from alembic import command

    from models.db import NotMigrated

    config = _config()
    try:
        _refuse_unknown_revision(config)
    except NotMigrated:  # no SQLite file yet: the migrations create it
        pass
    _run(command.upgrade, config, revision)
    console.print(f"[green]database at {_where(config)}[/]")


# `-1` is a revision, not an option.
@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: Annotated[
        str | None,
        typer.Argument(help="Target revision (required): -1, a revision id such as 0001, or base.", show_default=False),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Go ahead although the database holds data (it is dropped with the tables).")
    ] = False,
) -> None:
    """Migrate the database down to REVISION, dropping the tables and columns later migrations made.

    A database holding data needs --yes, or your confirmation at a terminal of the rows
    per table shown; without either nothing is dropped.

    Example: studioctl db downgrade 0001 --yes
    """
    if revision is None or not revision.strip():
        raise fail("name the target revision: studioctl db downgrade -1 | <revision> | base (studioctl db current shows it)")
    from alembic import command

    from models.db import get_engine
    from models.tables import row_counts

    config = _config()
    _refuse_unknown_revision(config)
    with get_engine().connect() as connection:
        held = {name: count for name, count in row_counts(connection).items() if count}
    if held and not yes:
        rows = ", ".join(f"{name} {count}" for name, count in held.items())
        if not sys.stdin.isatty():
            raise fail(
                f"the database holds {sum(held.values())} row(s) ({rows}); downgrading to {revision} drops "
                "tables and columns with their rows: add --yes to go ahead"
            )
        console.print(f"[yellow]the database holds data[/]: {rows}", highlight=False)
        typer.confirm(f"Downgrade to {revision}, dropping tables and columns with their rows?", abort=True)
    _run(command.downgrade, config, revision)
    console.print(f"[yellow]database at {_where(config)}[/]")


@app.command()
def current() -> None:
    """Show the database's current revision and the newest one available.

    Example: studioctl db current
    """
    from alembic.script import ScriptDirectory

    config = _config()
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    known = {revision.revision for revision in script.walk_revisions()}
    revisions = _current(config)
    if revisions == (head,):
        state = "[green]up to date[/]"
    elif any(revision not in known for revision in revisions):
        state = "[red]unknown to these migrations (a newer release's?)[/]"
    else:
        state = "[yellow]behind: run studioctl db upgrade[/]"
    console.print(f"current: {', '.join(revisions) or 'none (empty database)'}  head: {head}  {state}", highlight=False)
