"""`studioctl enrollments`: who holds which weekly slot, and assigning or cancelling one."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from studioctl.common import JsonOption, emit_json, parse_date, print_table, show_record

app = typer.Typer(
    help="Enrollments: a student's weekly lesson.\n\nExample: studioctl enrollments list --status provisional",
    no_args_is_help=True,
)

EnrollmentId = Annotated[int, typer.Argument(help="Enrollment id.")]


_show = functools.partial(show_record, "Enrollment", style=None)


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="provisional, action_required, active, past_due, paused, failed, expired or cancelled.")
    ] = None,
    teacher: Annotated[str | None, typer.Option(help="Only this teacher's (id or email).")] = None,
    student: Annotated[int | None, typer.Option(help="Only this student's (id).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """List enrollments, newest first.

    Example: studioctl enrollments list --teacher ada@studio.example --status active
    """
    from models.db import session_scope
    from models.people import get_teacher
    from models.reports import list_enrollments

    with session_scope(write=False) as session:
        teacher_id = get_teacher(session, teacher).id if teacher else None
        rows = list_enrollments(session, status=status, teacher_id=teacher_id, student_id=student)
    if json_output:
        return emit_json(rows)
    print_table(
        "Enrollments",
        ["id", "student", "teacher", "slot", "instrument", "plan", "status"],
        [
            [
                r["id"],
                r["student"],
                r["teacher"],
                r["slot"],
                r["instrument"],
                "offline" if r["offline"] else r["plan"],
                r["status"],
            ]
            for r in rows
        ],
        empty="no enrollments match",
    )


@app.command()
def show(enrollment: EnrollmentId, json_output: bool = JsonOption) -> None:
    """Show one enrollment with its student, slot, plan and Stripe ids.

    Example: studioctl enrollments show 7
    """
    from models.db import session_scope
    from models.enrollment import get_enrollment
    from models.reports import enrollment_view

    with session_scope(write=False) as session:
        view = enrollment_view(session, get_enrollment(session, enrollment))
    _show(view, json_output)


@app.command()
def assign(
    student: Annotated[int, typer.Option(help="Student id.")],
    timeslot: Annotated[int, typer.Option(help="Timeslot id.")],
    instrument: Annotated[str, typer.Option(help="Instrument the teacher teaches.")],
    plan: Annotated[str | None, typer.Option(help="Plan id or frequency (weekly, monthly, semester).")] = None,
    start: Annotated[str | None, typer.Option(help="First lesson on or after YYYY-MM-DD (default: next one).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Paid outside Stripe: active at once.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """Give a student a weekly slot. With --offline it is active at once; otherwise it is a
    provisional hold and the Stripe booking task is queued after commit.

    Example: studioctl enrollments assign --student 12 --timeslot 5 --instrument piano --plan monthly
    """
    from models.booking import assign_enrollment
    from models.db import after_commit, session_scope
    from models.enrollment import PROVISIONAL
    from models.reports import enrollment_view

    start_date = parse_date(start, field="start") if start else None
    with session_scope() as session:
        enrollment = assign_enrollment(
            session,
            student_id=student,
            timeslot_id=timeslot,
            instrument=instrument,
            plan=plan,
            start_date=start_date,
            offline=offline,
            actor="admin",
        )
        if enrollment.status == PROVISIONAL:
            from workers.tasks import book_enrollment

            enrollment_id = enrollment.id
            after_commit(session, lambda: book_enrollment(enrollment_id))
        view = enrollment_view(session, enrollment)
    verb = "[green]assigned (offline, active)[/]" if offline else "[yellow]held provisionally[/]: booking queued"
    _show(view, json_output, verb)


@app.command()
def cancel(
    enrollment: EnrollmentId,
    reason: Annotated[str | None, typer.Option(help="Why (kept on the enrollment).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Cancel a live enrollment; the slot is free again and the Stripe subscription is
    cancelled by a task after commit.

    Example: studioctl enrollments cancel 7 --reason "moved away"
    """
    from models.db import after_commit, session_scope
    from models.enrollment import cancel_enrollment, get_enrollment
    from models.reports import enrollment_view

    with session_scope() as session:
        row = cancel_enrollment(session, get_enrollment(session, enrollment), reason=reason, actor="admin")
        if not row.offline:
            from workers.tasks import cancel_subscription

            enrollment_id = row.id
            after_commit(session, lambda: cancel_subscription(enrollment_id))
        view = enrollment_view(session, row)
    _show(view, json_output, "[yellow]cancelled[/]")
