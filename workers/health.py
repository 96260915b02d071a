"""`studioctl doctor`'s checks: each looks at one part of the running system and says, in one
line, what it found and, when that is wrong, what to do.

Settings → database → Redis → Stripe (key, webhook secret, the active plans' Prices) →
Mailjet → a consumer alive (its heartbeat) → periodic jobs on schedule → dead letters →
holds past their expiry. A check that needs one that failed is `skipped` (invalid settings
skip everything; a database not at its head skips what reads it). Network checks wait at most
`NETWORK_TIMEOUT` seconds (Redis: `REDIS_TIMEOUT`).

What "not configured" means, decided here:
- Redis unset: fine, the SQLite queue beside the database is in use.
- Stripe key unset: fine while no active plan exists; a failure once one does (a booking on
  it could never be charged: the pipeline stops at "Stripe billing is not configured").
- Webhook secret unset: fine without a Stripe key, a failure with one (Stripe's events are
  refused, so payments finished later — 3-D Secure, renewals, failures — go unseen).
- File email backend: fine (emails are written to OUTBOX_DIR; none reaches a family).

Secrets are never shown: a Stripe key by its mode and last four characters, the others as
"set". The Stripe key is tried with a read that changes nothing (`StripeGateway.check_key`),
Mailjet's credentials and sender with its sender list (`MailjetBackend.sender_status`).

Here: the checks of settings, database, Redis, Stripe and Mailjet, and `run_checks`. What a
check says (`Check`, the statuses, titles) is `workers/health_outcome.py`; the checks of the
workers (consumer, periodic jobs, dead letters, holds) are `workers/health_operations.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from models import health
from models.base import utcnow
from models.config import ConfigError, Settings, get_settings
from workers.health_operations import HOLD_GRACE, consumer_check, dead_letters_check, holds_check, jobs_check
from workers.health_outcome import FAIL, OK, SKIPPED, TITLES, Check

NETWORK_TIMEOUT = 5.0
REDIS_TIMEOUT = 1.0


def key_mode(key: str) -> str:
    """test, live, publishable or unknown, from a Stripe key's prefix."""
    if key.startswith(("sk_test_", "rk_test_")):
        return "test"
    if key.startswith(("sk_live_", "rk_live_")):
        return "live"
    return "publishable" if key.startswith("pk_") else "unknown"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() if parts.hostname else url


# Settings, database, Redis ------------------------------------------------------------


def _settings_check(settings: Settings) -> Check:
    database = "SQLite" if settings.is_sqlite else "PostgreSQL"
    queue = "Redis queue" if settings.REDIS_URL else "SQLite queue"
    stripe = f"Stripe {key_mode(settings.STRIPE_SECRET_KEY)} key" if settings.STRIPE_SECRET_KEY else "no Stripe key"
    return Check("settings", OK, f"valid: {database} database, {queue}, {settings.email_backend} emails, {stripe}")


def _database_check(settings: Settings) -> Check:
    from models.db import get_engine, make_engine

    where = sa.engine.make_url(settings.DATABASE_URL).render_as_string(hide_password=True)
    # A PostgreSQL server that does not answer: a short connect timeout, not the OS's minutes.
    probe = None if settings.is_sqlite else make_engine(settings.DATABASE_URL, connect_args={"connect_timeout": 5})
    try:
        status = health.schema_status(probe or get_engine())
    finally:
        if probe is not None:
            probe.dispose()
    at, head = ", ".join(sorted(status.revisions)) or "none", ", ".join(sorted(status.head))
    facts = {"url": where, "revisions": sorted(status.revisions), "head": sorted(status.head)}
    if status.state == "at_head":
        return Check("database", OK, f"{where} at the migrations' head ({head})", facts=facts)
    upgrade = "run `studioctl db upgrade` (back the database up first)"
    outcomes = {
        "behind": (f"{where} at revision {at}, behind the migrations' head ({head})", upgrade),
        "unknown": (
            f"{where} at revision {at}, which these migrations do not know (migrated by a newer release?)",
            "run that release's code, or restore a backup",
        ),
        "not_migrated": (f"{where} has no schema (never migrated)", "run `studioctl db upgrade`"),
        "unreachable": (f"{where} unreachable: {status.error}", "check DATABASE_URL and that the database server runs"),
    }
    detail, fix = outcomes[status.state]
    return Check("database", FAIL, detail, fix, facts | {"state": status.state})


def redis_problem(settings: Settings, *, timeout: float = REDIS_TIMEOUT) -> str | None:
    """None when Redis answers a PING (or `REDIS_URL` is unset), else what is wrong, one line."""
    if not settings.REDIS_URL:
        return None
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"unreachable ({type(error).__name__})"
    finally:
        client.close()
    return None


def _redis_check(settings: Settings) -> Check:
    if not settings.REDIS_URL:
        return Check("redis", OK, "not configured: the SQLite queue beside the database is in use")
    where = _without_credentials(settings.REDIS_URL)
    problem = redis_problem(settings)
    if problem:
        return Check(
            "redis",
            FAIL,
            f"{where} {problem}",
            "check REDIS_URL and that Redis runs (meanwhile the API answers and the recovery jobs re-enqueue what it could not)",
        )
    return Check("redis", OK, f"{where} answers")


# Stripe ----------------------------------------------------------------------------------


def _stripe_gateway(settings: Settings):
    from workers.stripe_gateway import StripeGateway

    return StripeGateway(settings.model_copy(update={"STRIPE_TIMEOUT_SECONDS": NETWORK_TIMEOUT}))


def _stripe_key_check(settings: Settings, plans: list[dict] | None) -> Check:
    from workers.stripe_gateway import StripeGatewayError, TransientStripeError, http_status, is_key_refused

    key = settings.STRIPE_SECRET_KEY
    if not key:
        if plans:
            return Check(
                "stripe_key",
                FAIL,
                f"not configured, and {len(plans)} active plan(s) bill through Stripe: bookings on them cannot be charged",
                "set STRIPE_SECRET_KEY (sk_test_… or sk_live_…)",
            )
        known = "no active plan bills through Stripe" if plans is not None else "active plans not read: the database failed"
        return Check("stripe_key", OK, f"not configured ({known})")
    mode = key_mode(key)
    where = urlsplit(settings.STRIPE_API_BASE).netloc if settings.STRIPE_API_BASE else "api.stripe.com"
    described = f"{mode} key …{key[-4:]}"
    facts = {"mode": mode, "api": where}
    try:
        _stripe_gateway(settings).check_key()
    except StripeGatewayError as error:
        if is_key_refused(error):
            status = http_status(error)
            fix = (
                "the restricted key may not read customers: grant it the permissions the studio needs, or use the secret key"
                if status == 403
                else "set STRIPE_SECRET_KEY to the secret key (sk_…) of the studio's account: Stripe dashboard → Developers → API keys"
            )
            if mode == "publishable":
                fix = "STRIPE_SECRET_KEY holds a publishable key (pk_…): " + fix
            return Check("stripe_key", FAIL, f"{described} refused by {where} ({status})", fix, facts)
        if isinstance(error, TransientStripeError):
            status = http_status(error)
            answer = f"answered {status}: {error}" if status else f"did not answer ({type(error.__cause__).__name__})"
            return Check("stripe_key", FAIL, f"{where} {answer}", "check the network to Stripe (STRIPE_API_BASE, proxies)", facts)
        return Check("stripe_key", FAIL, f"{where} refused the check: {error}", "check STRIPE_SECRET_KEY", facts)
    return Check("stripe_key", OK, f"{described} accepted by {where} ({mode} mode)", facts=facts)


def _webhook_secret_check(settings: Settings) -> Check:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not settings.STRIPE_SECRET_KEY:
        return Check("stripe_webhook_secret", OK, "set" if secret else "not configured (nor is Stripe)")
    fix = "set STRIPE_WEBHOOK_SECRET to the signing secret (whsec_…) of the endpoint <PUBLIC_BASE_URL>/webhooks/stripe"
    if not secret:
        return Check(
            "stripe_webhook_secret",
            FAIL,
            "not set: every Stripe event is refused, so payments finished later (3-D Secure, renewals, failures) go unseen",
            fix,
        )
    if not secret.startswith("whsec_"):
        return Check("stripe_webhook_secret", FAIL, "set, but not a signing secret (those start with whsec_)", fix)
    return Check("stripe_webhook_secret", OK, "set (Stripe cannot be asked whether it matches the endpoint's)")


def _price_problem(gateway, plan: dict) -> str | None:
    from workers.stripe_customers import INTERVALS
    from workers.stripe_gateway import StripeGatewayError, is_not_found

    label = f"plan {plan['id']} ({plan['name']})"
    try:
        price = gateway.retrieve_price(plan["stripe_price_id"])
    except StripeGatewayError as error:
        if is_not_found(error):
            return f"{label}: Price {plan['stripe_price_id']} does not exist in this Stripe account"
        return f"{label}: Stripe could not be asked ({error})"
    interval = (price.get("recurring") or {}).get("interval")
    expected = (plan["amount_cents"], plan["currency"], INTERVALS.get(plan["frequency"]))
    found = (price.get("unit_amount"), price.get("currency"), interval)
    if not price.get("active", True):
        return f"{label}: Price {price['id']} is archived in Stripe"
    if found != expected:
        return f"{label}: Price {price['id']} is {found[0]} {found[1]} per {found[2] or 'charge'}, the plan {expected[0]} {expected[1]} per {expected[2] or 'charge'}"
    return None


def _prices_check(settings: Settings, plans: list[dict], stripe: Check) -> Check:
    if not plans:
        return Check("stripe_prices", OK, "no active plan")
    if stripe.status != OK or not settings.STRIPE_SECRET_KEY:
        return Check("stripe_prices", SKIPPED, "needs a working Stripe key")
    gateway = _stripe_gateway(settings)
    priced = [plan for plan in plans if plan["stripe_price_id"]]
    problems = [problem for plan in priced if (problem := _price_problem(gateway, plan))]
    facts = {"plans": [{"id": plan["id"], "price": plan["stripe_price_id"]} for plan in plans]}
    if problems:
        return Check(
            "stripe_prices",
            FAIL,
            "; ".join(problems),
            "use the key of the account the plans were made in, or make the plan again (`studioctl plans add`) and deactivate this one",
            facts,
        )
    waiting = len(plans) - len(priced)
    later = f"; {waiting} without a Price yet (its first booking makes it)" if waiting else ""
    return Check("stripe_prices", OK, f"{len(priced)} active plan(s) with their Price present and matching{later}", facts=facts)


# Mailjet ---------------------------------------------------------------------------------


def _mailjet_check(settings: Settings) -> Check:
    if settings.email_backend != "mailjet":
        return Check("mailjet", OK, f"file backend in use: emails are written to {settings.OUTBOX_DIR}, none reaches a family")
    from workers.mailer import MailjetBackend, TerminalEmailError, TransientEmailError

    sender = settings.MAILJET_SENDER_EMAIL
    try:
        status = MailjetBackend(settings).sender_status(timeout=NETWORK_TIMEOUT)
    except TerminalEmailError as error:
        return Check(
            "mailjet",
            FAIL,
            f"credentials refused: {error}",
            "check MAILJET_API_KEY and MAILJET_API_SECRET (Mailjet → Account settings → REST API keys)",
        )
    except TransientEmailError as error:
        return Check("mailjet", FAIL, str(error), "check the network to Mailjet (MAILJET_API_URL, proxies)")
    if status == "Active":
        return Check("mailjet", OK, f"credentials accepted; sender {sender} validated", facts={"sender": sender})
    where = "Mailjet → Account settings → Sender addresses & domains"
    if status is None:
        return Check(
            "mailjet",
            FAIL,
            f"credentials accepted, but {sender} is not a sender of this account",
            f"add and validate it ({where}), or set MAILJET_SENDER_EMAIL to a validated one",
        )
    return Check(
        "mailjet",
        FAIL,
        f"credentials accepted, but sender {sender} is {status}, not validated",
        f"validate it: the link Mailjet mailed to it, or the domain's DNS records ({where})",
    )


# All of them -----------------------------------------------------------------------------


def _skipped(names, why: str) -> list[Check]:
    return [Check(name, SKIPPED, why) for name in names]


def run_checks(*, now: datetime | None = None) -> list[Check]:
    """Every check, in `TITLES` order."""
    now = now or utcnow()
    try:
        settings = get_settings()
    except ConfigError as error:
        fix = "correct it in the environment or .env (.env.example describes each setting)"
        return [Check("settings", FAIL, str(error), fix), *_skipped(list(TITLES)[1:], "needs valid settings")]
    checks = [_settings_check(settings), database := _database_check(settings), _redis_check(settings)]
    facts: dict[str, Any] | None = None
    if database.status == OK:
        from models.db import session_scope

        with session_scope(write=False) as session:
            facts = {
                "plans": health.active_plans(session),
                "seen": health.consumers_seen(session),
                "runs": health.job_runs(session),
                "letters": health.open_dead_letters(session),
                "holds": health.holds_overdue(session, expired_before=now - HOLD_GRACE),
            }
    stripe = _stripe_key_check(settings, facts["plans"] if facts else None)
    checks += [stripe, _webhook_secret_check(settings)]
    prices = _prices_check(settings, facts["plans"], stripe) if facts else Check("stripe_prices", SKIPPED, "needs the database")
    checks += [prices, _mailjet_check(settings)]
    if facts is None:
        return checks + _skipped(["consumer", "periodic_jobs", "dead_letters", "expired_holds"], "needs the database")
    return checks + [
        consumer_check(facts["seen"], now),
        jobs_check(facts["runs"], facts["seen"], now),
        dead_letters_check(facts["letters"], now),
        holds_check(facts["holds"], now),
    ]
