"""`studioctl attendance`: mark what happened at a lesson (and the make-up it earns)."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, parse_date, print_table

app = typer.Typer(
    help="Lesson attendance.\n\nExample: studioctl attendance mark --enrollment 7 --date 2026-11-02 --status present",
    no_args_is_help=True,
)


@app.command()
def mark(
    enrollment: Annotated[int, typer.Option(help="Enrollment id.")],
    date: Annotated[str, typer.Option("--date", help="Lesson date YYYY-MM-DD (a real occurrence).")],
    status: Annotated[str, typer.Option(help="present, excused, no_show, teacher_cancelled or late_cancel.")],
    note: Annotated[str | None, typer.Option(help="A note for the record.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Mark (or re-mark) one lesson. excused / teacher_cancelled earn one make-up credit and
    email an invite — excused only while the student is under MAKEUP_CREDITS_PER_SEMESTER
    (`makeups policy`; `makeups grant` gives one anyway); late_cancel (called off too late)
    earns none; no_show emails a notice; re-marking to present, no_show or late_cancel
    withdraws an unbooked credit.

    Example: studioctl attendance mark --enrollment 7 --date 2026-11-02 --status excused --note "flu"
    """
    from models.absences import mark_lesson
    from models.db import session_scope
    from models.reports import attendance_view, check_attendance_status

    lesson_date = parse_date(date)
    check_attendance_status(status)
    with session_scope() as session:
        marked = mark_lesson(session, enrollment_id=enrollment, lesson_date=lesson_date, status=status, note=note, actor="admin")
        view = attendance_view(session, marked.attendance, makeup=marked.credit) | {"credit_reason": marked.credit_reason}
    if json_output:
        return emit_json(view)
    extra = f"; make-up credit {view['makeup_id']}" if view["makeup_id"] else ""
    extra += f"; {view['credit_reason']}" if view["credit_reason"] else ""
    console.print(
        f"marked enrollment {enrollment} on {view['lesson_date']} ({view['student']}): [bold]{view['status']}[/]{extra}"
    )


@app.command("list")
def list_(
    date: Annotated[str | None, typer.Option("--date", help="Only this lesson date YYYY-MM-DD.")] = None,
    enrollment: Annotated[int | None, typer.Option(help="Only this enrollment.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """List attendance marks, newest lesson first.

    Example: studioctl attendance list --enrollment 7
    """
    from models.db import session_scope
    from models.reports import list_attendance

    day = parse_date(date) if date else None
    with session_scope(write=False) as session:
        rows = list_attendance(session, day=day, enrollment_id=enrollment)
    if json_output:
        return emit_json(rows)
    print_table(
        "Attendance",
        ["id", "date", "enrollment", "student", "status", "make-up", "note"],
        [[r["id"], r["lesson_date"], r["enrollment_id"], r["student"], r["status"], r["makeup_id"], r["note"]] for r in rows],
        empty="no attendance marked",
    )
