"""`studioctl term-preview`: every lesson date of a semester, and what each family pays."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import console, emit_json, print_table


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency.upper()}"


def term_preview(
    semester: Annotated[int, typer.Option(help="Semester id.")],
    payee: Annotated[str | None, typer.Option(help="Only this family (id or email).")] = None,
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Preview a semester: every lesson date and what each family pays.

    Lesson dates per enrollment with closures removed and DST-change weeks flagged
    (*), with lesson counts and amounts per family (monthly plans per month with lessons,
    weekly and semester plans per lesson, offline enrollments at 0), and the sibling
    discount each one gets (SIBLING_DISCOUNT_PERCENT): amounts are at full price, the
    discount is taken off them.

    Example: studioctl term-preview --semester 1 --payee sam@family.example
    """
    from models.db import session_scope
    from models.people import get_payee
    from models.scheduling import get_semester
    from models.term_preview import term_preview as preview

    with session_scope(write=False) as session:
        payee_id = get_payee(session, payee).id if payee else None
        data = preview(session, get_semester(session, semester), payee_id=payee_id)
    if json_output:
        return emit_json(data)
    info = data["semester"]
    console.print(
        f"[bold]{info['name']}[/] {info['starts_on']} → {info['ends_on']}; closures: {', '.join(info['closures']) or 'none'}"
    )
    print_table(
        "Lessons",
        ["id", "student", "slot", "plan", "lessons", "amount", "discount", "dates"],
        [
            [
                e["id"],
                e["student"],
                f"{e['slot']} {e['teacher']}",
                e["plan"],
                e["lesson_count"],
                _money(e["amount_cents"], e["currency"]),
                f"-{_money(e['discount_cents'], e['currency'])} ({e['discount_percent']}%)" if e["discount_cents"] else "",
                " ".join(lesson["date"][5:] + ("*" if lesson["dst_change"] else "") for lesson in e["lessons"]),
            ]
            for e in data["enrollments"]
        ],
        empty="no live enrollments in this semester",
    )
    currency = data["enrollments"][0]["currency"] if data["enrollments"] else "usd"
    print_table(
        "Families",
        ["payee", "email", "lessons", "amount", "discount", "to pay"],
        [
            [
                f["payee"],
                f["email"],
                f["lessons"],
                _money(f["amount_cents"], currency),
                _money(f["discount_cents"], currency),
                _money(f["amount_cents"] - f["discount_cents"], currency),
            ]
            for f in data["families"]
        ],
        empty="",
    )
    if data["families"]:
        due = _money(data["total_cents"] - data["discount_cents"], currency)
        discount = f" (less {_money(data['discount_cents'], currency)} sibling discount: {due})" if data["discount_cents"] else ""
        console.print(f"total: [bold]{_money(data['total_cents'], currency)}[/]{discount}   (* = DST changed that week)")


def register(app: typer.Typer) -> None:
    """Add `term-preview` to the root app."""
    app.command("term-preview")(term_preview)
