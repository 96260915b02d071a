"""`studioctl payroll`: what each teacher is owed for the lessons taught over a range of dates."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from studioctl.common import console, emit_json, parse_date, print_table


def _money(cents: int | None, currency: str) -> str:
    return "no rate" if cents is None else f"{cents / 100:,.2f} {currency.upper()}"


def payroll(
    from_: Annotated[str, typer.Option("--from", help="First day YYYY-MM-DD.")],
    to: Annotated[str, typer.Option("--to", help="Last day YYYY-MM-DD (included).")],
    teacher: Annotated[str | None, typer.Option(help="Only this teacher (id or email).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    csv_output: Annotated[
        bool, typer.Option("--csv", help="Print CSV: a line per teacher (per paid lesson with --detail).")
    ] = False,
    detail: Annotated[bool, typer.Option("--detail", help="List each paid lesson with its attendance (or make-up) id.")] = False,
) -> None:
    """Pay per teacher for the lessons taught from --from to --to, at their rate per lesson
    (`teachers set-rate`).

    Paid: lessons marked present or no_show, late_cancel unless PAY_LATE_CANCEL=false, and
    make-ups that took place, each to whoever taught it (a substitute instead of the slot's
    teacher); excused and teacher_cancelled are not. Lessons of the range still unmarked (up to
    today) are listed separately and paid once marked.

    Example: studioctl payroll --from 2026-11-01 --to 2026-11-30 --detail
    """
    if json_output and csv_output:
        raise typer.BadParameter("give --json or --csv, not both")
    from models.config import get_settings
    from models.db import session_scope
    from models.payroll import payroll as report_of
    from models.payroll import payroll_csv
    from models.people import get_teacher

    first, last = parse_date(from_, field="from"), parse_date(to, field="to")
    with session_scope(write=False) as session:
        only = get_teacher(session, teacher) if teacher else None
        report = report_of(session, first=first, last=last, teacher=only)
    if json_output:
        return emit_json(report)
    if csv_output:
        sys.stdout.write(payroll_csv(report, detail=detail))
        return None
    _print(report, detail, get_settings().CURRENCY)
    return None


def _print(report: dict, detail: bool, currency: str) -> None:
    teachers = report["teachers"]
    print_table(
        f"Payroll {report['from']} → {report['to']}",
        ["teacher", "email", "rate", "lessons paid", "amount", "unmarked"],
        [
            [t["name"], t["email"], _money(t["rate_cents"], currency), t["lessons_paid"], _money(t["amount_cents"], currency)]
            + [len(t["unmarked"])]
            for t in teachers
        ],
        empty="no teachers",
    )
    if detail:
        for t in teachers:
            print_table(
                f"{t['name']}: lessons paid",
                ["date", "start", "kind", "attendance", "make-up", "status", "student", "for teacher", "amount"],
                [
                    [x["date"], x["start"], x["kind"], x["attendance_id"], x["makeup_id"], x["status"], x["student"]]
                    + [x["substitute_for"], _money(x["amount_cents"], currency)]
                    for x in t["lessons"]
                ],
                empty=f"{t['name']}: no lessons paid",
            )
    unmarked = [(t, entry) for t in teachers for entry in t["unmarked"]]
    print_table(
        f"Unmarked (not paid until marked; up to {report['unmarked_until']})" if report["unmarked_until"] else "Unmarked",
        ["teacher", "date", "start", "kind", "enrollment", "make-up", "student", "for teacher"],
        [
            [t["name"], e["date"], e["start"], e["kind"], e["enrollment_id"], e["makeup_id"], e["student"], e["substitute_for"]]
            for t, e in unmarked
        ],
        empty="no unmarked lessons",
    )
    missing = [t["email"] for t in teachers if t["rate_cents"] is None and t["lessons_paid"]]
    console.print(f"total: [bold]{_money(report['total_cents'], currency)}[/]" + (" (teachers with a rate)" if missing else ""))
    if missing:
        console.print(f"[yellow]no rate set for {', '.join(missing)}[/]: studioctl teachers set-rate EMAIL --per-lesson 25.00")


def register(app: typer.Typer) -> None:
    """Add `payroll` to the root app."""
    app.command("payroll")(payroll)
