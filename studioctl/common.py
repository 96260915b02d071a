"""What every command group shares: consoles, the error edge, parsing, tables and JSON output.

Heavy modules (SQLModel, Stripe, Huey) are imported inside commands, never here, so
`studioctl --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from typing import Any

import typer
from typer.core import TyperGroup

from models.plain import plain

_consoles: dict[bool, object] = {}


def get_console(*, stderr: bool = False):
    """The Rich console for stdout (or stderr), made on first use: importing Rich costs
    `studioctl --help` ~40 ms, so nothing here imports it at module level."""
    if stderr not in _consoles:
        from rich.console import Console

        _consoles[stderr] = Console(stderr=stderr)
    return _consoles[stderr]


def __getattr__(name: str):
    # `from studioctl.common import console, err_console` in command modules.
    if name == "console":
        return get_console()
    if name == "err_console":
        return get_console(stderr=True)
    raise AttributeError(name)


STATUS_STYLES = {
    "active": "green",
    "present": "green",
    "sent": "green",
    "processed": "green",
    "available": "green",
    "provisional": "yellow",
    "queued": "yellow",
    "booked": "cyan",
    "received": "yellow",
    "sending": "yellow",
    "past_due": "red",
    "failed": "red",
    "no_show": "red",
    "expired": "dim",
    "cancelled": "dim",
    "used": "dim",
    "excused": "magenta",
    "teacher_cancelled": "magenta",
    "ignored": "dim",
    "action_required": "yellow",
    "paused": "cyan",
}


def fail(message: str) -> typer.Exit:
    """Print one red line on stderr and return the Exit(1) to raise."""
    get_console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _domain_error(error: BaseException) -> str | None:
    from models.errors import DomainError

    if isinstance(error, DomainError):
        return error.detail
    if isinstance(error, OverflowError):  # an id or count past what the database (or a date) can hold
        return f"a number is out of range ({_first_line(error)}); nothing was changed"
    config = sys.modules.get("models.config")
    if config is not None and isinstance(error, config.ConfigError):
        return str(error)
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None:
        if isinstance(error, sqlalchemy_exc.DBAPIError):
            from models.db import NOT_MIGRATED, is_not_migrated, read_only_reason

            if is_not_migrated(error):
                return NOT_MIGRATED
            if read_only := read_only_reason(error):
                return read_only
        if isinstance(error, sqlalchemy_exc.OperationalError):
            return f"database unavailable: {_first_line(error.orig or error)}"
        if isinstance(error, sqlalchemy_exc.IntegrityError):
            return "refused by the database (a uniqueness or reference rule); nothing was changed"
        if isinstance(error, sqlalchemy_exc.DataError):
            # An id past the integer range, a value too long...: the statement and its
            # parameters (which may hold secrets) stay out of the message.
            return f"refused by the database: {_first_line(error.orig or error)}; nothing was changed"
    return None


def _first_line(error: BaseException | str) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class StudioGroup(TyperGroup):
    """The root group: domain errors become one red line and exit 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:
            import click

            # Typer 0.29 vendors its own click: its usage errors are not click's classes.
            usage_errors = (
                click.exceptions.ClickException,
                *(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"),
            )
            if isinstance(error, usage_errors):
                raise
            message = _domain_error(error)
            if message is None:
                if os.environ.get("STUDIOCTL_DEBUG"):
                    raise
                message = f"unexpected {type(error).__name__}: {_first_line(error)} (set STUDIOCTL_DEBUG=1 for the traceback)"
            raise fail(message) from None


def parse_date(value: str, *, field: str = "date") -> date:
    """`YYYY-MM-DD` → date; a domain Invalid otherwise."""
    from models.errors import Invalid

    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"{value!r} is not a date (YYYY-MM-DD)", field=field) from None


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout (no colours, no wrapping)."""
    sys.stdout.write(json.dumps(plain(data), indent=2, ensure_ascii=False) + "\n")


def styled(value: Any) -> str:
    """A cell, coloured when it is a known status."""
    text = "" if value is None else str(plain(value))
    style = STATUS_STYLES.get(text)
    return f"[{style}]{text}[/]" if style else text


def print_table(title: str, columns: list[str], rows: list[list[Any]], *, empty: str = "nothing to show") -> None:
    """A Rich table; a dim line instead when there are no rows."""
    if not rows:
        get_console().print(f"[dim]{empty}[/]")
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(styled(cell) for cell in row))
    get_console().print(table)


JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def print_record(title: str, record: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
    """One object as a two-column Rich table (field, value); lists are joined by commas."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, pad_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in record.items():
        if key in skip:
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(plain(item)) for item in value) or "-"
        table.add_row(key.replace("_", " "), styled("-" if value is None else value))
    get_console().print(table)


def show_record(
    kind: str, view: dict[str, Any], json_output: bool, verb: str = "", *, style: str | None = "green", skip: tuple[str, ...] = ()
) -> None:
    """One object after a command: JSON with --json; else an optional verb line (in `style`,
    or as given when it carries its own markup) and the record titled `<kind> <id>`."""
    if json_output:
        emit_json(view)
        return
    if verb:
        get_console().print(f"[{style}]{verb}[/]" if style else verb)
    print_record(f"{kind} {view['id']}", view, skip=skip)
