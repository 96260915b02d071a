"""`studioctl payees`: the paying parents (referred to by id or email)."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, emit_json, get_console, parse_date, print_table, show_record

app = typer.Typer(
    help="Payees: the paying parents.\n\nExample: studioctl payees show parent@family.example", no_args_is_help=True
)

PayeeRef = Annotated[str, typer.Argument(help="Payee id or email.")]


def _show(view: dict, json_output: bool, verb: str = "") -> None:
    show_record("Payee", view, json_output, verb, skip=("students",))
    if not json_output and view.get("students"):
        print_table(
            "Students",
            ["id", "name", "birth date", "notes"],
            [[s["id"], s["name"], s["birth_date"], s["notes"]] for s in view["students"]],
        )


@app.command("list")
def list_(json_output: bool = JsonOption) -> None:
    """List payees with their number of students.

    Example: studioctl payees list --json
    """
    from models.db import session_scope
    from models.reports import list_payees

    with session_scope(write=False) as session:
        rows = list_payees(session)
    if json_output:
        return emit_json(rows)
    print_table(
        "Payees",
        ["id", "name", "email", "phone", "students", "signed up"],
        [[r["id"], r["name"], r["email"], r["phone"], r["student_count"], "yes" if r["signed_up"] else "no"] for r in rows],
        empty="no payees yet: studioctl payees add --name ... --email ...",
    )


@app.command()
def add(
    name: Annotated[str, typer.Option(help="Full name.")],
    email: Annotated[str, typer.Option(help="Email (unique).")],
    phone: Annotated[str | None, typer.Option(help="Phone number.")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Add a payee (the parent can later sign in with the same email and is linked).

    Example: studioctl payees add --name "Sam Garcia" --email sam@family.example --phone "+1 555 0100"
    """
    from models.db import session_scope
    from models.people import add_payee
    from models.reports import payee_view

    with session_scope() as session:
        view = payee_view(session, add_payee(session, name=name, email=email, phone=phone, actor="admin"))
    _show(view, json_output, "added payee")


@app.command()
def show(payee: PayeeRef, json_output: bool = JsonOption) -> None:
    """Show a payee and their students.

    Example: studioctl payees show sam@family.example
    """
    from models.db import session_scope
    from models.people import get_payee
    from models.reports import payee_view

    with session_scope(write=False) as session:
        view = payee_view(session, get_payee(session, payee), with_students=True)
    _show(view, json_output)


@app.command()
def update(
    payee: PayeeRef,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    email: Annotated[str | None, typer.Option(help="New email.")] = None,
    phone: Annotated[str | None, typer.Option(help="New phone (empty string clears it).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Change a payee's name, email or phone.

    Example: studioctl payees update 4 --phone "+1 555 0199"
    """
    from models.db import session_scope
    from models.people import get_payee, update_payee
    from models.reports import payee_view

    if name is None and email is None and phone is None:
        raise typer.BadParameter("give at least one of --name, --email, --phone")
    with session_scope() as session:
        row = update_payee(session, get_payee(session, payee), name=name, email=email, phone=phone, actor="admin")
        view = payee_view(session, row, with_students=True)
    _show(view, json_output, "updated payee")


@app.command()
def invite(payee: PayeeRef, json_output: bool = JsonOption) -> None:
    """Make a one-time code the parent enters in the app to claim this family record.

    For a parent whose sign-in cannot claim it by email (not verified, or another address):
    the code links their sign-in once, within 7 days. It is shown only now (the studio keeps
    a hash); a new invite revokes the payee's earlier ones.

    Example: studioctl payees invite sam@family.example
    """
    from models.access import create_invite
    from models.db import session_scope
    from models.people import get_payee

    with session_scope() as session:
        row = get_payee(session, payee)
        record, code = create_invite(session, row, actor="admin")
        view = {"payee_id": row.id, "email": row.email, "invite_code": code, "expires_at": record.expires_at}
    if json_output:
        return emit_json(view)
    console = get_console()
    console.print(f"[green]invite code for payee {row.id} <{row.email}>:[/] [bold]{code}[/]", highlight=False)
    console.print(
        f"valid once, until {record.expires_at:%Y-%m-%d %H:%M} UTC; the parent signs in and enters it in the app", highlight=False
    )


@app.command("rotate-calendar-token")
def rotate_calendar_token(payee: PayeeRef, json_output: bool = JsonOption) -> None:
    """Give a family a new calendar link: the old one (shared or leaked) answers 404 at once.

    The new link is not printed (it is the family's secret): their app shows it.

    Example: studioctl payees rotate-calendar-token sam@family.example
    """
    from models.access import rotate_calendar_token as rotate
    from models.db import session_scope
    from models.people import get_payee
    from models.reports import payee_view

    with session_scope() as session:
        view = payee_view(session, rotate(session, get_payee(session, payee), actor="admin"))
    _show(view, json_output, "rotated the calendar link: the old one no longer works; the family's app shows the new one")


@app.command()
def lessons(
    payee: PayeeRef,
    from_: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: today).")] = None,
    to: Annotated[str | None, typer.Option(help="Last day, included (default: 8 weeks on; at most 26 weeks).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """A family's lessons, as its app shows them (GET /parent/lessons): the weekly lessons of
    its bookings within their dates and its booked make-ups, by start, with attendance once
    marked. Closure dates are not lessons.

    Example: studioctl payees lessons sam@family.example --from 2026-11-02 --to 2026-11-29
    """
    from dataclasses import asdict

    from models.clock import studio_today
    from models.config import get_settings
    from models.db import session_scope
    from models.lessons import family_lessons, lesson_range
    from models.people import get_payee

    first, last = lesson_range(
        studio_today(), parse_date(from_, field="from") if from_ else None, parse_date(to, field="to") if to else None
    )
    with session_scope(write=False) as session:
        row = get_payee(session, payee)
        rows = family_lessons(session, row.id, first=first, last=last, tz=get_settings().tz)
    if json_output:
        return emit_json({"payee_id": row.id, "from": first, "to": last, "items": [asdict(lesson) for lesson in rows]})
    print_table(
        f"Lessons of {row.name} <{row.email}>, {first} to {last}",
        ["date", "starts", "student", "teacher", "instrument", "where", "kind", "booking", "make-up", "attendance"],
        [
            [
                lesson.date,
                f"{lesson.starts_at:%H:%M %Z}",
                lesson.student,
                f"{lesson.substitute} (for {lesson.teacher})" if lesson.substitute else lesson.teacher,
                lesson.instrument,
                f"{lesson.location}/{lesson.room}" if lesson.room else "-",
                f"{lesson.kind} (hold)" if lesson.tentative else lesson.kind,
                lesson.enrollment_id,
                lesson.makeup_id,
                lesson.attendance,
            ]
            for lesson in rows
        ],
        empty=f"no lessons from {first} to {last}",
    )


@app.command("set-reminders")
def set_reminders(
    payee: PayeeRef,
    email: Annotated[bool | None, typer.Option("--email/--no-email", help="Lesson reminders by email.")] = None,
    sms: Annotated[bool | None, typer.Option("--sms/--no-sms", help="Lesson reminders by SMS (needs a phone).")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number, stored in E.164 ('' removes it).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Choose a family's lesson reminder channels (a day ahead; email on, SMS off by default).

    Example: studioctl payees set-reminders sam@family.example --sms --phone "+1 212 555 0123"
    """
    from models import reminders
    from models.db import session_scope
    from models.people import get_payee

    with session_scope() as session:
        row = get_payee(session, payee)
        reminders.set_reminders(session, row, email=email, sms=sms, phone=phone, actor="admin")
        view = {"id": row.id, "email": row.email} | reminders.reminder_settings(row)
    show_record("Reminders", view, json_output, "reminders set")
