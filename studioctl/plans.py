"""`studioctl plans`: the price list, mirrored in Stripe as Products and Prices."""

from __future__ import annotations

from typing import Annotated

import typer

from studioctl.common import JsonOption, console, emit_json, print_table

app = typer.Typer(
    help="Plans and their Stripe prices.\n\nExample: studioctl plans add --frequency monthly --amount 120.00",
    no_args_is_help=True,
)


@app.command()
def add(
    frequency: Annotated[str, typer.Option(help="weekly | monthly | semester (semester: the amount is per lesson).")],
    amount: Annotated[str, typer.Option(help="Amount in currency units, e.g. 30.00.")],
    name: Annotated[str, typer.Option(help="Display name (default: the frequency).")] = "",
    currency: Annotated[str, typer.Option(help="ISO currency (default: CURRENCY).")] = "",
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not create the Stripe Product/Price now (the first booking does).")
    ] = False,
    json_output: bool = JsonOption,
) -> None:
    """Add a plan and create its Stripe Product and Price (recurring for weekly/monthly).

    The frequency, amount (more than 0), currency (ISO 4217) and name are checked first; the
    plan is saved only once Stripe has made its Price: when Stripe fails, nothing is saved.

    Example: studioctl plans add --frequency weekly --amount 30.00
    """
    from models.billing import add_plan, parse_amount
    from models.config import get_settings
    from models.db import session_scope
    from models.stripe_records import plan_row

    frequency = frequency.strip().lower()
    amount_cents = parse_amount(amount)
    currency = (currency or get_settings().CURRENCY).strip().lower()
    name = name.strip() or frequency.title()
    fields = {"name": name, "frequency": frequency, "amount_cents": amount_cents, "currency": currency, "actor": "admin"}
    if offline:
        with session_scope() as session:
            plan_id = add_plan(session, **fields).id
    else:
        from models.errors import DomainError
        from workers.billing_setup import create_plan
        from workers.stripe_gateway import StripeGateway, StripeGatewayError

        try:
            plan_id = create_plan(StripeGateway(), **fields)
        except StripeGatewayError as error:
            raise DomainError(f"Stripe failed: {error}; no plan was saved (--offline saves it without Stripe)") from None
    with session_scope(write=False) as session:
        view = plan_row(session, plan_id=plan_id)
    if json_output:
        return emit_json(view)
    console.print(
        f"[green]plan {view['id']} added[/]: {view['name']} {view['frequency']} {view['amount']} {view['currency']} "
        f"(Stripe price {view['stripe_price_id'] or 'not yet created'})"
    )


@app.command("list")
def list_(json_output: bool = JsonOption) -> None:
    """List plans with their Stripe ids.

    Example: studioctl plans list --json
    """
    from models.db import session_scope
    from models.stripe_records import list_plans

    with session_scope(write=False) as session:
        rows = list_plans(session)
    if json_output:
        return emit_json(rows)
    print_table(
        "Plans",
        ["id", "name", "frequency", "amount", "currency", "active", "Stripe price"],
        [
            [r["id"], r["name"], r["frequency"], r["amount"], r["currency"], r["active"], r["stripe_price_id"] or "-"]
            for r in rows
        ],
        empty="no plans yet: studioctl plans add --frequency monthly --amount 120.00",
    )
