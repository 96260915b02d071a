"""The `studioctl` entry point: one Typer app, command groups loaded only when used.

`studioctl --help` must stay fast, so the root lists its groups from the table below
without importing them; a group's module (and whatever heavy library it needs) is imported
only when that group is invoked. Help is plain text at the root for the same reason.
"""

from __future__ import annotations

import importlib

import typer
import typer.main

from studioctl.common import StudioGroup

# name on the command line: (module in studioctl/, one-line help shown by `studioctl --help`)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db", "Schema migrations (upgrade, downgrade, current)."),
    "seed": ("seed", "Seed the instruments or a demo studio."),
    "instruments": ("instruments", "Instruments taught at the studio."),
    "teachers": ("teachers", "Teachers and what they teach."),
    "payees": ("payees", "Paying parents (payees)."),
    "students": ("students", "Students of each family."),
    "locations": ("locations", "Locations the studio teaches at: add, list."),
    "rooms": ("rooms", "Rooms of each location: add, list."),
    "timeslots": ("timeslots", "Weekly 30-minute slots: add, publish a range, put in a room, (de)activate."),
    "semesters": ("semesters", "Semesters, make-up windows and closures."),
    "plans": ("plans", "Plans and prices (mirrored in Stripe)."),
    "enrollments": ("enrollments", "Enrollments: assign, cancel, list, show."),
    "attendance": ("attendance", "Mark and list attendance."),
    "makeups": ("makeups", "Make-up credits: list, grant, book, cancel."),
    "waitlist": ("waitlist", "The waiting list for slots: list, remove."),
    "offers": ("offers", "Freed slots offered to the waiting list: list, send."),
    "dashboard": ("dashboard", "Today's lessons, provisional holds, payments."),
    "emails": ("emails", "Email log: list, retry."),
    "sms": ("sms", "Text message log (lesson reminders): list, retry."),
    "deadletters": ("deadletters", "Jobs that failed for good: list, retry, resolve."),
    "stripe": ("stripe_cmd", "Stripe events: list, replay, reconcile."),
    "jobs": ("jobs", "Periodic jobs: list, run one now."),
    "export": ("export", "Export a table, or the roster, to CSV."),
    "import": ("import_cmd", "Import a roster from CSV (all or nothing)."),
    "payroll": ("payroll", "What each teacher is owed for the lessons taught in a range of dates."),
    "term-preview": ("term_preview", "Lesson dates, counts and amounts of a semester per family."),
    "serve": ("serve", "Run the parent API (gunicorn)."),
    "worker": ("worker", "Run the Huey worker (consumer)."),
    "doctor": ("doctor", "Check settings, database, Redis, Stripe, Mailjet, the worker and its jobs."),
}


def _load(name: str) -> typer.core.TyperCommand | typer.core.TyperGroup:
    module_name, _ = LAZY_COMMANDS[name]
    module = importlib.import_module(f"studioctl.{module_name}")
    if hasattr(module, "register"):  # a top-level command, not a group
        holder = typer.Typer()
        holder.callback()(lambda: None)
        module.register(holder)
        return typer.main.get_command(holder).commands.get(name)
    command = typer.main.get_command(module.app)
    command.name = name
    return command


class LazyStudioGroup(StudioGroup):
    """The root group: subcommands imported on first use; the error edge of StudioGroup."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in LAZY_COMMANDS:
            command = _load(name)
            self.add_command(command, name)
        return command

    def format_commands(self, ctx, formatter):
        rows = [(name, LAZY_COMMANDS[name][1]) for name in sorted(LAZY_COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyStudioGroup,
    name="studioctl",
    help="Run the music studio: teachers, slots, enrollments, attendance, billing.\n\nExample: studioctl dashboard today",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Run the music studio: teachers, slots, enrollments, attendance, billing.

    Example: studioctl dashboard today
    """
    from workers import wiring  # cheap: Huey and the tasks load on the first email sent

    wiring.install()


def run() -> None:
    """Console-script entry point. Logs go to stderr in LOG_FORMAT, from LOG_LEVEL up (read from
    the environment: the settings cost too much to load for `--help`); WARNING by default, an
    admin's terminal. `serve` and `worker` set them up again from the settings (INFO)."""
    import os

    from models import logs

    level = (os.environ.get("LOG_LEVEL") or "").strip().upper()
    logs.configure(level=level if level in logs.LEVELS else "WARNING", fmt=(os.environ.get("LOG_FORMAT") or "text").lower())
    app()


if __name__ == "__main__":
    run()
