"""`studioctl db`: apply, roll back and show the schema version (Alembic)."""

from __future__ import annotations

import typer

from studioctl.common import console

app = typer.Typer(help="Schema migrations (Alembic). Example: studioctl db upgrade", no_args_is_help=True)


def _config():
    from migrations import alembic_config
    from models.config import get_settings

    return alembic_config(get_settings().DATABASE_URL)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database up to REVISION (default: head).

    Example: studioctl db upgrade
    """
    from alembic import command

    command.upgrade(_config(), revision)
    console.print(f"[green]database at {revision}[/]")


@app.command()
def downgrade(revision: str = typer.Argument("-1", help="Target revision, e.g. -1 or base.")) -> None:
    """Migrate the database down to REVISION (default: one step).

    Example: studioctl db downgrade base
    """
    from alembic import command

    command.downgrade(_config(), revision)
    console.print(f"[yellow]database at {revision}[/]")


@app.command()
def current() -> None:
    """Show the database's current revision and the newest one available.

    Example: studioctl db current
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from models.db import get_engine

    config = _config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with get_engine().connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    state = "[green]up to date[/]" if revision == head else "[yellow]behind: run studioctl db upgrade[/]"
    console.print(f"current: {revision or 'none (empty database)'}  head: {head}  {state}")
