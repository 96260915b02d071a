"""`studioctl offers`: freed slots offered to the waiting list (issue 14)."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(help="Offers of freed slots to the waiting list.\n\nExample: studioctl offers list", no_args_is_help=True)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="open, accepted, declined or lapsed.")] = None, json_output: bool = JsonOption
) -> None:
    """List offers, newest first.

    Example: studioctl offers list --status open --json
    """
    from models import offers
    from models.db import session_scope

    with session_scope(write=False) as session:
        rows = [offers.offer_view(offer) for offer in offers.list_offers(session, status=status)]
    if json_output:
        return emit_json(rows)
    print_table(
        "Offers",
        ["id", "entry", "timeslot", "student", "status", "expires", "booking"],
        [
            [r["id"], r["entry_id"], r["timeslot_id"], r["student_id"], r["status"], r["expires_at"], r["booking_id"] or "-"]
            for r in rows
        ],
        empty="no offers",
    )


@app.command()
def send(
    timeslot: Annotated[int, typer.Option("--timeslot", help="The free slot to offer.")],
    entry: Annotated[int, typer.Option("--entry", help="The waiting-list entry to offer it to.")],
) -> None:
    """Offer a free slot to one waiting-list entry, by the same rules as the automatic offers.

    Example: studioctl offers send --timeslot 12 --entry 4
    """
    from models import offers
    from models.db import session_scope

    with session_scope() as session:
        offer = offers.offer_slot(session, timeslot, entry_id=entry, actor="admin")
        if offer is None:
            raise typer.BadParameter(f"timeslot {timeslot} is not open for booking", param_hint="--timeslot")
        offer_id, expires = offer.id, offer.expires_at
    console.print(f"[green]offer {offer_id} sent[/]: timeslot {timeslot} held for entry {entry} until {expires}")
