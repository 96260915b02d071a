"""`studioctl stripe`: received webhook events, replays, reconciliation, disputes and refunds seen in Stripe."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(
    help="Stripe events, reconciliation, disputes and refunds.\n\nExample: studioctl stripe events --status failed",
    no_args_is_help=True,
)


@app.command()
def events(
    status: Annotated[str | None, typer.Option(help="received | processed | ignored | failed")] = None,
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    json_output: bool = JsonOption,
) -> None:
    """List received Stripe events, newest first.

    Example: studioctl stripe events --status failed
    """
    from models.db import session_scope
    from models.stripe_records import list_stripe_events

    with session_scope(write=False) as session:
        rows = list_stripe_events(session, status=status, limit=limit)
    if json_output:
        return emit_json(rows)
    print_table(
        "Stripe events",
        ["id", "event", "type", "status", "received", "error"],
        [[r["id"], r["stripe_event_id"], r["type"], r["status"], r["received_at"], (r["error"] or "")[:50]] for r in rows],
        empty="no Stripe events received",
    )


@app.command()
def replay(event: Annotated[str, typer.Argument(help="Local id or Stripe event id (evt_...).")]) -> None:
    """Process a stored event again now (handlers re-read Stripe, so this is always safe).

    Example: studioctl stripe replay evt_1PqR...
    """
    from models.db import session_scope
    from models.stripe_records import reopen_stripe_event
    from workers.webhook_events import process_event

    with session_scope() as session:
        event_id = reopen_stripe_event(session, ref=event, actor="admin").id
    status = process_event(event_id)
    console.print(f"event {event}: [green]{status}[/]")


@app.command()
def reconcile(json_output: bool = JsonOption) -> None:
    """Compare active/past_due enrollments with their Stripe subscriptions now; fix and report drift.

    Example: studioctl stripe reconcile
    """
    from workers.periodic import run_job

    report = run_job("reconcile_stripe")
    if json_output:
        return emit_json(report)
    console.print(f"checked {report['checked']} subscription(s); {len(report['drift'])} difference(s)")
    for line in report["drift"]:
        console.print(f"  [yellow]{line}[/]")


@app.command()
def disputes(
    open_only: Annotated[bool, typer.Option("--open", help="Only disputes not decided yet (evidence may be due).")] = False,
    json_output: bool = JsonOption,
) -> None:
    """List chargebacks seen in Stripe, newest first: family, amount, status, evidence deadline.

    Example: studioctl stripe disputes --open
    """
    from models.config import get_settings
    from models.db import session_scope
    from models.money_events import list_disputes

    with session_scope(write=False) as session:
        rows = list_disputes(session, open_only=open_only)
    if json_output:
        return emit_json(rows)
    tz = get_settings().tz
    print_table(
        "Stripe disputes",
        ["dispute", "family", "amount", "status", "evidence due", "enrollment"],
        [
            [
                r["stripe_dispute_id"],
                r["payee"] or "-",
                r["amount"],
                r["status"],
                _local(r["evidence_due_by"], tz),
                r["enrollment_id"] or "",
            ]
            for r in rows
        ],
        empty="no open disputes" if open_only else "no disputes seen in Stripe",
    )


@app.command()
def refunds(json_output: bool = JsonOption) -> None:
    """List refunds seen in Stripe, newest first (ours and those made in the Stripe dashboard).

    Example: studioctl stripe refunds --json
    """
    from models.config import get_settings
    from models.db import session_scope
    from models.money_events import list_stripe_refunds

    with session_scope(write=False) as session:
        rows = list_stripe_refunds(session)
    if json_output:
        return emit_json(rows)
    tz = get_settings().tz
    print_table(
        "Stripe refunds",
        ["refund", "family", "amount", "status", "enrollment", "seen"],
        [
            [
                r["stripe_refund_id"],
                r["payee"] or "-",
                r["amount"],
                r["status"] or "",
                r["enrollment_id"] or "",
                _local(r["created_at"], tz),
            ]
            for r in rows
        ],
        empty="no refunds seen in Stripe",
    )


def _local(value: str | None, tz) -> str:
    """An ISO timestamp of a row (UTC) in the studio's zone, to the minute."""
    from datetime import datetime

    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if value else "-"
