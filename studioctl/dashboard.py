"""`studioctl dashboard`: today's lessons, provisional holds, and recent payments."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, emit_json, get_console, parse_date, print_table

app = typer.Typer(help="What needs the admin's eye.\n\nExample: studioctl dashboard today", no_args_is_help=True)


@app.command()
def today(
    date: Annotated[str | None, typer.Option("--date", help="Another day YYYY-MM-DD (default: today, studio time).")] = None,
    json_output: bool = JsonOption,
) -> None:
    """Every lesson and make-up of the day by start time, with teacher, student, instrument and
    attendance (and room, once slots have rooms). Closures show no lessons; weeks where DST
    changed are flagged; a teacher away with a substitute shows as "Substitute (for Teacher)".
    Lessons at more than one location: a table per location.

    Example: studioctl dashboard today --date 2026-11-02 --json
    """
    from models.clock import studio_today
    from models.dashboard import day_schedule
    from models.db import session_scope

    day = parse_date(date) if date else studio_today()
    with session_scope(write=False) as session:
        schedule = day_schedule(session, day)
    if json_output:
        return emit_json(schedule)
    title = f"{day:%A %Y-%m-%d}" + (" — studio closed" if schedule["closed"] else "")
    lessons = schedule["lessons"]
    columns = ["start", "teacher", "student", "instrument", "kind", "attendance"]
    rooms = any(entry["room"] for entry in lessons)
    if rooms:
        columns.insert(1, "room")
    # One table per location when the day's lessons are at more than one (no room: a group too).
    groups: dict[str | None, list[dict]] = {}
    for entry in lessons:
        groups.setdefault(entry["location"], []).append(entry)
    if len(groups) <= 1:
        only = next(iter(groups), None)
        print_table(
            f"{only} — {title}" if only else title,
            columns,
            [_day_row(entry, rooms) for entry in lessons],
            empty=f"{title}: no lessons",
        )
    else:
        for location in sorted(groups, key=lambda name: (name is None, name or "")):
            where = location or "no room set"
            print_table(f"{where} — {title}", columns, [_day_row(entry, rooms) for entry in groups[location]])
    if any(entry["dst_change"] for entry in schedule["lessons"]):
        get_console().print("[yellow]DST[/]: the clock changed since last week; lessons keep their wall-clock time.")


def _day_row(entry: dict, rooms: bool) -> list:
    row = [
        entry["start"] + (" [yellow]DST[/]" if entry["dst_change"] else ""),
        f"{entry['substitute']} (for {entry['teacher']})" if entry["substitute"] else entry["teacher"],
        entry["student"],
        entry["instrument"],
        "make-up" if entry["kind"] == "make_up" else "lesson",
        entry["attendance"] or ("-" if entry["kind"] == "make_up" else "unmarked"),
    ]
    if rooms:
        row.insert(1, entry["room"] or "-")
    return row


def _waiting_for(row: dict) -> str:
    if row["status"] == "action_required":
        return "waiting for the parent's 3-D Secure check"
    if row["status"] == "offered":
        return "waiting-list offer: waiting for the family's answer"
    return row["pipeline_state"] or "-"


@app.command()
def provisionals(json_output: bool = JsonOption) -> None:
    """Holds: provisional ones waiting for payment setup, action_required ones waiting for the
    parent's 3-D Secure check, and open waiting-list offers, with the time left on each.

    Example: studioctl dashboard provisionals
    """
    from models.dashboard import provisional_holds
    from models.db import session_scope

    with session_scope(write=False) as session:
        rows = provisional_holds(session)
    if json_output:
        return emit_json(rows)
    print_table(
        "Provisional holds",
        ["id", "student", "teacher", "slot", "payee", "time left", "pipeline"],
        [
            [
                r["id"],
                r["student"],
                r["teacher"],
                r["slot"],
                r["payee"],
                "[red]overdue[/]" if r["overdue"] else _left(r["seconds_left"]),
                _waiting_for(r),
            ]
            for r in rows
        ],
        empty="no provisional holds",
    )


def _left(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


@app.command()
def payments(
    days: Annotated[int, typer.Option(min=1, max=3660, help="How many days back.")] = 7, json_output: bool = JsonOption
) -> None:
    """Recent Stripe events (as recorded locally) and the failures to act on.

    Example: studioctl dashboard payments --days 30
    """
    from models.dashboard import payment_activity
    from models.db import session_scope

    with session_scope(write=False) as session:
        activity = payment_activity(session, days=days)
    if json_output:
        return emit_json(activity)
    print_table(
        f"Stripe events, last {days} days",
        ["id", "received", "type", "status", "error"],
        [[e["id"], e["received_at"][:16].replace("T", " "), e["type"], e["status"], e["error"]] for e in activity["events"]],
        empty=f"no Stripe events in the last {days} days",
    )
    print_table(
        "Failures",
        ["kind", "id", "what", "error"],
        [[f["kind"], f["id"], f["what"], f["error"]] for f in activity["failures"]],
        empty="no failures",
    )
