"""The `studioctl` entry point: one Typer app, one sub-app per command group."""

from __future__ import annotations

import typer

from studioctl import db, seed
from studioctl.common import StudioGroup

app = typer.Typer(
    cls=StudioGroup,
    name="studioctl",
    help="Run the music studio: teachers, slots, enrollments, attendance, billing.\n\nExample: studioctl dashboard today",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db.app, name="db")
app.add_typer(seed.app, name="seed")


def _register_optional_groups() -> None:
    """Command groups built in their own modules; each registers under its name."""
    import importlib

    for module_name, group in (
        ("instruments", "instruments"), ("teachers", "teachers"), ("payees", "payees"), ("students", "students"),
        ("timeslots", "timeslots"), ("semesters", "semesters"), ("plans", "plans"), ("enrollments", "enrollments"),
        ("attendance", "attendance"), ("makeups", "makeups"), ("dashboard", "dashboard"), ("emails", "emails"),
        ("deadletters", "deadletters"), ("stripe_cmd", "stripe"), ("jobs", "jobs"),
    ):
        try:
            module = importlib.import_module(f"studioctl.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"studioctl.{module_name}":
                raise
            continue
        app.add_typer(module.app, name=group)
    for module_name in ("export", "term_preview", "serve", "worker"):
        try:
            module = importlib.import_module(f"studioctl.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"studioctl.{module_name}":
                raise
            continue
        module.register(app)


_register_optional_groups()


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
