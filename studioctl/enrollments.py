"""`studioctl enrollments`: who holds which weekly slot, and assigning, cancelling or moving one."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from studioctl.common import JsonOption, emit_json, fail, parse_date, print_table, show_record

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
    start: Annotated[
        str | None,
        typer.Option(
            help="First lesson on or after YYYY-MM-DD (default: the next one the slot is free for). "
            "With --offline it may be in the past (a roster entered mid-term: attendance for past lessons)."
        ),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Paid outside Stripe: active at once.")] = False,
    json_output: bool = JsonOption,
) -> None:
    """Give a student a weekly slot. With --offline it is active at once; otherwise it is a
    provisional hold and the Stripe booking task is queued after commit.

    Example: studioctl enrollments assign --student 12 --timeslot 5 --instrument piano --plan monthly
    Example: studioctl enrollments assign --student 12 --timeslot 5 --instrument piano --offline --start 2026-09-14
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
    at_period_end: Annotated[
        bool,
        typer.Option(
            "--at-period-end",
            help="As a family cancels: a weekly/monthly booking keeps its lessons until the end of the period paid "
            "for and Stripe does not renew it; a hold is cancelled now.",
        ),
    ] = False,
    json_output: bool = JsonOption,
) -> None:
    """Cancel a live enrollment; the slot is free again and the Stripe subscription is
    cancelled by a task after commit. With --at-period-end, Stripe is told not to renew the
    subscription and the enrollment stays active until its last lesson in the paid period
    (then cancelled; the slot is free from the day after).

    Example: studioctl enrollments cancel 7 --reason "moved away"
    Example: studioctl enrollments cancel 7 --at-period-end
    """
    from models.db import after_commit, session_scope
    from models.enrollment import cancel_enrollment, get_enrollment
    from models.reports import enrollment_view

    if at_period_end:
        from workers.enrollment_changes import cancel_booking

        if reason is not None:
            raise fail("--reason is not kept with --at-period-end (the reason says it ends with its paid period)")
        row = cancel_booking(enrollment, actor="admin")
        with session_scope(write=False) as session:
            view = enrollment_view(session, row)
        verb = f"[yellow]ends after {row.end_date}[/] (Stripe will not renew it)" if row.status == "active" else ""
        return _show(view, json_output, verb or f"[yellow]{row.status}[/]")
    with session_scope() as session:
        row = cancel_enrollment(session, get_enrollment(session, enrollment), reason=reason, actor="admin")
        if not row.offline:
            from workers.tasks import cancel_subscription

            enrollment_id = row.id
            after_commit(session, lambda: cancel_subscription(enrollment_id))
        view = enrollment_view(session, row)
    _show(view, json_output, "[yellow]cancelled[/]")


@app.command()
def move(
    enrollment: EnrollmentId,
    timeslot: Annotated[int, typer.Option(help="The free timeslot to move to (its teacher teaches the instrument).")],
    start: Annotated[
        str | None, typer.Option(help="First lesson there on or after YYYY-MM-DD (default: the next one the slot is free for).")
    ] = None,
    json_output: bool = JsonOption,
) -> None:
    """Move an active enrollment to another weekly slot, same plan, nothing charged: a new
    enrollment starts there and the old one ends with its last lesson before it. The family
    gets `lesson_moved`; the Stripe subscription's metadata names the new enrollment (a task
    after commit).

    Example: studioctl enrollments move 7 --timeslot 12 --start 2026-12-07
    """
    from models.changes import move_enrollment
    from models.db import after_commit, session_scope
    from models.enrollment import get_enrollment
    from models.reports import enrollment_view

    start_date = parse_date(start, field="start") if start else None
    with session_scope() as session:
        row = move_enrollment(
            session, get_enrollment(session, enrollment), timeslot_id=timeslot, start_date=start_date, actor="admin"
        )
        if row.stripe_subscription_id:
            from workers.tasks import move_subscription

            moved_id = row.id
            after_commit(session, lambda: move_subscription(moved_id))
        view = enrollment_view(session, row)
    _show(view, json_output, f"[green]moved[/]: enrollment {enrollment} continues as {row.id} from {row.start_date}")
