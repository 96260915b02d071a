"""`studioctl makeups`: make-up credits, granting, booking onto a free slot-date, cancelling."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from studioctl.common import JsonOption, emit_json, get_console, parse_date, print_table, show_record

app = typer.Typer(help="Make-up lesson credits.\n\nExample: studioctl makeups list --expiring-within 14", no_args_is_help=True)

MakeupId = Annotated[int, typer.Argument(help="Make-up credit id.")]


_show = functools.partial(show_record, "Make-up", style=None)


@app.command("list")
def list_(
    student: Annotated[int | None, typer.Option(help="Only this student's (id).")] = None,
    status: Annotated[str | None, typer.Option(help="available, booked, used or expired.")] = None,
    expiring_within: Annotated[int | None, typer.Option(min=0, max=3660, help="Available credits expiring within DAYS.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """List make-up credits, soonest expiry first.

    Example: studioctl makeups list --status available --expiring-within 14
    """
    from models.clock import studio_today
    from models.db import session_scope
    from models.reports import list_makeups

    today = studio_today()
    with session_scope(write=False) as session:
        rows = list_makeups(session, student_id=student, status=status, expiring_within=expiring_within, today=today)
    if json_output:
        return emit_json(rows)
    print_table(
        "Make-ups",
        ["id", "student", "status", "reason", "expires", "booked"],
        [
            [
                r["id"],
                r["student"],
                r["status"],
                r["reason"],
                r["expires_on"],
                f"{r['lesson_date']} {r['slot']}" if r["lesson_date"] else "",
            ]
            for r in rows
        ],
        empty="no make-up credits match",
    )


@app.command()
def policy(json_output: bool = JsonOption) -> None:
    """The make-up policy a family's absence is judged by (MAKEUP_NOTICE_HOURS and
    MAKEUP_CREDITS_PER_SEMESTER in the settings); `makeups grant` overrides it.

    Example: studioctl makeups policy --json
    """
    from models.absences import makeup_policy

    view = makeup_policy()
    if json_output:
        return emit_json(view)
    hours, cap = view["notice_hours"], view["credits_per_semester"]
    get_console().print(
        f"[bold]Make-up policy[/]\n"
        f"notice: {hours} hours (MAKEUP_NOTICE_HOURS) — a lesson called off at least {hours} hours before it starts is "
        f"excused and earns a make-up credit; later it is late_cancel, no credit\n"
        f"cap: {cap} credits per student per semester (MAKEUP_CREDITS_PER_SEMESTER) — past it an absence is excused "
        f"with no credit; teacher cancellations and `makeups grant` are not counted"
    )


@app.command()
def grant(
    student: Annotated[int, typer.Option(help="Student id.")],
    reason: Annotated[str, typer.Option(help="Why the credit is granted.")],
    instrument: Annotated[str | None, typer.Option(help="Instrument (default: the student's latest enrollment's).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Grant a make-up credit by hand; it expires at the make-up window's end and the family
    gets an invite.

    Example: studioctl makeups grant --student 12 --reason "teacher ran late"
    """
    from models.attendance import grant_makeup
    from models.db import session_scope
    from models.reports import makeup_view

    with session_scope() as session:
        view = makeup_view(
            session, grant_makeup(session, student_id=student, reason=reason, instrument=instrument, actor="admin")
        )
    _show(view, json_output, "[green]granted make-up[/]")


@app.command()
def book(
    makeup: MakeupId,
    timeslot: Annotated[int, typer.Option(help="Timeslot id.")],
    date: Annotated[str, typer.Option("--date", help="YYYY-MM-DD on the slot's weekday, inside the window.")],
    json_output: bool = JsonOption,
) -> None:
    """Book a credit onto a free slot-date (no lesson, no other make-up, not a closure).

    Example: studioctl makeups book 3 --timeslot 5 --date 2026-11-09
    """
    from models.attendance import book_makeup, get_makeup
    from models.db import session_scope
    from models.reports import makeup_view

    lesson_date = parse_date(date)
    with session_scope() as session:
        credit = book_makeup(session, get_makeup(session, makeup), timeslot_id=timeslot, lesson_date=lesson_date, actor="admin")
        view = makeup_view(session, credit)
    _show(view, json_output, "[cyan]booked make-up[/]")


@app.command()
def cancel(makeup: MakeupId, json_output: bool = JsonOption) -> None:
    """Un-book a booked make-up; the credit is available again until it expires.

    Example: studioctl makeups cancel 3
    """
    from models.attendance import cancel_makeup, get_makeup
    from models.db import session_scope
    from models.reports import makeup_view

    with session_scope() as session:
        view = makeup_view(session, cancel_makeup(session, get_makeup(session, makeup), actor="admin"))
    _show(view, json_output, "[yellow]make-up cancelled[/]")
