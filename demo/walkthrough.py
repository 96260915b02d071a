"""One booking's whole life through the real system, printed step by step (`make demo`).

    python -m demo.walkthrough                 # from the repository root (what `make demo` runs)
    python /path/to/repo/demo/walkthrough.py   # from any folder with a migrated, seeded studio.db

On the embedded default (SQLite `studio.db`, Huey's SQLite queue beside it, `.eml` files in
the outbox) and with no outside service: the local Stripe server (localstripe + our compat
layer) on a free loopback port, the parent API served in-process on another, secrets made up
for this run. Then, as a parent's app would: a Supabase-like token → `POST /auth/exchange` →
`PUT /parent/payee` → `POST /parent/students` → `GET /public/timeslots` → `POST
/parent/payment-setup` and the card confirmed on the local Stripe server (what Stripe.js does)
→ `POST /parent/bookings` (202) → the Huey consumer (`studioctl worker`) runs the booking
pipeline → `GET /parent/bookings/<id>` polled until `active` → the confirmation in the outbox.

Safe to run again in the same folder: each run signs up a new family and books another free
slot; the local Stripe state is kept beside the database (`studio-stripe.pickle`).
It needs no pytest: the local Stripe, the sign-in token, the HTTP client, the API server and
the worker process come from `tests/support/` (`stripe_server`, `jwt_tokens`, `live`,
`consumer`), as they do for the tests and the benchmarks.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from another folder
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.support import stripe_server  # noqa: E402
from tests.support.consumer import Consumer  # noqa: E402
from tests.support.jwt_tokens import supabase_token  # noqa: E402
from tests.support.live import call, threaded_server  # noqa: E402

console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
STRIPE_KEY = "sk_test_demo"
TIMEOUT = 60.0


class DemoError(Exception):
    """A step did not do what it should; the message says which."""


def step(number: int, text: str) -> None:
    console.print(f"\n[bold cyan]\\[{number}][/] [bold]{text}[/]")


def detail(text: str) -> None:
    console.print(f"    {text}")


# Setting up: database, secrets, the Stripe ids of an earlier run ---------------------------


def configure() -> tuple[Path, Path]:
    """Point every part at the same files, by absolute path (the worker runs in another process),
    with made-up secrets for this run; returns (database, outbox)."""
    from models.config import get_settings, reset_settings

    settings = get_settings()
    database = settings.sqlite_path
    if database is None:
        raise DemoError("the demo runs on the embedded default: DATABASE_URL must be a sqlite:/// file")
    database = database.resolve()
    if not database.exists():
        raise DemoError(f"{database} does not exist: run `studioctl db upgrade` and `studioctl seed demo` first")
    outbox = Path(settings.OUTBOX_DIR)
    outbox = outbox if outbox.is_absolute() else database.parent / outbox
    os.environ.update(
        DATABASE_URL=f"sqlite:///{database}",
        OUTBOX_DIR=str(outbox),
        EMAIL_BACKEND="file",
        JWT_SECRET=secrets.token_urlsafe(32),
        SUPABASE_JWT_SECRET=secrets.token_urlsafe(32),
        SUPABASE_JWKS_URL="",  # blank = unset, whatever a local .env says: the demo signs with the secret
        SUPABASE_JWT_ISSUER="",
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=os.environ.get("STRIPE_WEBHOOK_SECRET") or "whsec_demo",
        RATELIMIT_AUTH="1000/minute",
        RATELIMIT_BOOKINGS="1000/minute",
    )
    reset_settings()
    return database, outbox


def forget_stripe_ids() -> None:
    """A fresh local Stripe knows none of the ids an earlier run stored: forget them (demo only)."""
    import sqlalchemy as sa

    from models.billing import Plan
    from models.db import session_scope
    from models.people import Payee

    with session_scope() as session:
        plans = session.execute(
            sa.update(Plan).where(Plan.stripe_price_id.is_not(None)).values(stripe_price_id=None, stripe_product_id=None)
        ).rowcount
        payees = session.execute(
            sa.update(Payee).where(Payee.stripe_customer_id.is_not(None)).values(stripe_customer_id=None)
        ).rowcount
    if plans or payees:
        detail(
            f"[dim](a fresh local Stripe: forgot the Stripe ids of {plans} plan(s) and {payees} family(ies) of an earlier run)[/]"
        )


class Api:
    """The parent's app talking to the API: JSON, its token, the status each step expects."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        token: str | None = None,
        headers: dict | None = None,
        expect: int = 200,
    ) -> tuple[dict, dict]:
        """One request; (JSON body, headers) when it answers `expect`, else a DemoError."""
        bearer = token or self.token
        sent = {"Accept": "application/json", **({"Authorization": f"Bearer {bearer}"} if bearer else {}), **(headers or {})}
        answer = call(method, self.base_url + path, body, sent, timeout=30)
        if answer.status != expect:
            raise DemoError(f"{method} {path} answered {answer.status}, expected {expect}: {json.dumps(answer.body)[:300]}")
        return answer.body or {}, answer.headers


# The walk -------------------------------------------------------------------------------


def walk(api: Api, stripe_base: str, database: Path, outbox: Path) -> None:
    import stripe

    run = uuid.uuid4().hex[:6]
    sub, email_address = f"demo-parent-{run}", f"demo-{run}@example.com"

    step(3, "sign-in: a Supabase-like access token → POST /auth/exchange")
    # What Supabase Auth hands the parent's app after sign-in (HS256 with the project's JWT secret).
    signed_in = supabase_token(sub, email_address, secret=os.environ["SUPABASE_JWT_SECRET"])
    exchanged, _ = api.call("POST", "/auth/exchange", token=signed_in)
    api.token = exchanged["access_token"]
    detail(f"Supabase user {sub} <{email_address}> → our API token ({exchanged['expires_in']} s)")

    step(4, "the family: PUT /parent/payee, POST /parent/students")
    payee, _ = api.call("PUT", "/parent/payee", {"name": f"Demo Parent {run}"})
    student, _ = api.call("POST", "/parent/students", {"name": "Robin"}, expect=201)
    detail(f"payee {payee['id']} {payee['name']} <{payee['email']}>, student {student['id']} {student['name']}")

    step(5, "a free slot: GET /public/timeslots?available=true")
    slots, _ = api.call("GET", "/public/timeslots?available=true&limit=50")
    slot = next((item for item in slots["items"] if item["instruments"]), None)
    if slot is None:
        raise DemoError("every slot is taken: nothing left to book (re-seed with `studioctl seed demo`)")
    weekdays = "Mon Tue Wed Thu Fri Sat Sun".split()
    detail(
        f"slot {slot['id']}: {weekdays[slot['weekday']]} {slot['start']}–{slot['end']} with {slot['teacher_name']}, "
        f"{slot['instruments'][0]}; next lesson {slot['next_occurrence']}"
    )

    step(6, "payment setup: POST /parent/payment-setup → a SetupIntent, confirmed with a test card")
    setup, _ = api.call("POST", "/parent/payment-setup")
    setup_intent_id = setup["client_secret"].split("_secret_")[0]
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_base}, max_network_retries=0)
    intent = client.v1.setup_intents.confirm(setup_intent_id, {"payment_method": "pm_card_visa"})
    detail(f"setup intent {setup_intent_id} for customer {intent.customer}")
    detail(f"the parent's browser (Stripe.js) confirms it with a test Visa: {intent.status}, card {intent.payment_method}")

    step(7, "booking: POST /parent/bookings → 202, a provisional hold, the booking task queued after commit")
    booking, headers = api.call(
        "POST",
        "/parent/bookings",
        {"student_id": student["id"], "timeslot_id": slot["id"], "instrument": slot["instruments"][0], "plan": "monthly"},
        headers={"Idempotency-Key": f"demo-{run}"},
        expect=202,
    )
    detail(f"booking {booking['id']}: {booking['status']}, held until {booking['expires_at']}, poll {headers.get('Location')}")

    step(8, "the worker: `studioctl worker` (a Huey consumer on the SQLite queue beside the database)")
    log_path = database.with_name(database.stem + "-demo-worker.log")
    worker = Consumer(
        dict(os.environ),
        log_path,
        cwd=database.parent,
        command=[sys.executable, "-m", "studioctl.main", "worker", "--no-periodic", "--workers", "2"],
    )
    worker.start()
    detail(f"consumer pid {worker.process.pid}, log {log_path}")
    try:
        status = poll_booking(api, booking["id"])
        confirmation = wait_for_confirmation(booking["id"])
    finally:
        worker.stop()  # SIGINT lets a running task finish
    if status["status"] != "active":
        raise DemoError(f"booking {booking['id']} ended {status['status']}: {status.get('failure_reason')} (see {log_path})")

    step(9, f"booking {booking['id']} is [green]ACTIVE[/]: what Stripe and the database hold")
    show_stripe(client, booking["id"])
    show_emails(booking["id"])

    step(10, "the confirmation email in the outbox")
    path = outbox / confirmation.provider_message_id.removeprefix("file:")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    detail(f"[bold]{path}[/]")
    detail(f"From: {message['From']}")
    detail(f"To: {message['To']}")
    detail(f"Subject: {message['Subject']}")
    text = message.get_body(preferencelist=("plain",)).get_content().strip().splitlines()
    for line in text[:8]:
        detail(f"  [dim]│[/] {line}")


def poll_booking(api: Api, booking_id: int) -> dict:
    """GET /parent/bookings/<id> until it is no longer provisional."""
    deadline, seen = time.monotonic() + TIMEOUT, None
    while True:
        current, _ = api.call("GET", f"/parent/bookings/{booking_id}")
        if current["status"] != seen:
            seen = current["status"]
            detail(f"GET /parent/bookings/{booking_id} → {seen}")
        if seen != "provisional":
            return current
        if time.monotonic() > deadline:
            raise DemoError(f"booking {booking_id} still provisional after {TIMEOUT:.0f} s: is the worker running?")
        time.sleep(0.2)


def wait_for_confirmation(enrollment_id: int):
    """The booking_confirmation EmailLog row, once the worker has sent it."""
    from sqlmodel import select

    from models.db import session_scope
    from models.outbox import EmailLog

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with session_scope(write=False) as session:
            row = session.exec(select(EmailLog).where(EmailLog.dedupe_key == f"booking_confirmation:{enrollment_id}")).first()
            if row is not None and row.status in ("sent", "failed"):
                if row.status == "failed":
                    raise DemoError(f"the confirmation email failed: {row.error}")
                session.expunge(row)
                return row
        time.sleep(0.2)
    raise DemoError("the confirmation email was not sent in time")


def show_stripe(client, enrollment_id: int) -> None:
    from models.db import session_scope
    from models.enrollment import Enrollment

    with session_scope(write=False) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        subscription_id, invoice_id, state = (
            enrollment.stripe_subscription_id,
            enrollment.stripe_invoice_id,
            enrollment.pipeline_state,
        )
    subscription = client.v1.subscriptions.retrieve(subscription_id)
    invoice = client.v1.invoices.retrieve(invoice_id)
    table = Table(title=f"enrollment {enrollment_id} (pipeline {state}) in the local Stripe server", title_justify="left")
    for column in ("object", "id", "status", "detail"):
        table.add_column(column)
    plan = subscription["items"]["data"][0]["plan"]
    table.add_row("customer", subscription.customer, "", "")
    table.add_row(
        "subscription",
        subscription.id,
        subscription.status,
        f"{plan['amount'] / 100:.2f} {plan['currency']} every {plan['interval']}, metadata {subscription.metadata.to_dict()}",
    )
    table.add_row("invoice", invoice.id, invoice.status, f"{invoice.amount_paid / 100:.2f} {invoice.currency} paid")
    console.print(table)


def show_emails(enrollment_id: int) -> None:
    from sqlmodel import select

    from models.db import session_scope
    from models.outbox import EmailLog

    with session_scope(write=False) as session:
        rows = session.exec(select(EmailLog).where(EmailLog.dedupe_key.like(f"%:{enrollment_id}")).order_by(EmailLog.id)).all()
        table = Table(title="EmailLog rows of this booking", title_justify="left")
        for column in ("id", "template", "recipient", "status", "attempts", "provider id"):
            table.add_column(column)
        for row in rows:
            table.add_row(str(row.id), row.template, row.recipient, row.status, str(row.attempts), row.provider_message_id or "")
    console.print(table)


def main() -> int:
    from models.config import reset_settings

    console.rule("[bold]One booking through the studio: API → worker → Stripe → email")
    try:
        database, outbox = configure()
        step(1, "the local Stripe server (localstripe + our compat layer, loopback only)")
        pickle_path = database.with_name(database.stem + "-stripe.pickle")
        if not pickle_path.exists():
            forget_stripe_ids()
        with stripe_server.running(pickle_path=str(pickle_path)) as stripe_base:
            os.environ["STRIPE_API_BASE"] = stripe_base
            reset_settings()
            detail(f"{stripe_base}, state in {pickle_path.name}")
            step(2, "the parent API in-process (webapi.create_app on a werkzeug server thread)")
            with threaded_server(_parent_api()) as api_base:
                detail(f"{api_base}, database {database}, JWT secrets made up for this run")
                walk(Api(api_base), stripe_base, database, outbox)
    except DemoError as error:
        console.print(f"\n[bold red]demo failed:[/] {error}")
        return 1
    console.rule("[bold green]done: one booking, provisional → active, billed in Stripe, confirmed by email")
    return 0


def _parent_api():
    """`webapi.create_app()`, with werkzeug's access log off (it would interleave with the steps)."""
    import logging

    from webapi import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return create_app()


if __name__ == "__main__":
    sys.exit(main())
