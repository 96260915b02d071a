"""`/admin/*`: the read-only admin API, for the admin's own tools and a future admin UI.

Every route needs our bearer token with the `admin` role, which `/auth/exchange` grants only
to a verified email on ADMIN_EMAIL_ALLOWLIST; the address must still be on the list when the
request comes (a token outlives a removal from it by at most JWT_TTL_SECONDS otherwise).
No token: 401; any other token: 403 `admin-required`.

Each route answers what the matching `studioctl` command shows, through the same read model
(`models.dashboard`, `models.payroll`, `models.outbox`, `models.stripe_records`, `models.audit`), the
lists paged like the parent lists: `limit` and the `cursor` of the previous page's
`next_cursor` (the payroll of a range is one answer). Each request is
audited (`admin.read`, actor `admin:<email>`, entity the route) in its own unit of work,
committed before anything is read, so no answer leaves unrecorded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag

from models.audit import list_audit, record_audit
from models.base import MAX_ID
from models.clock import studio_today
from models.dashboard import day_schedule, payment_activity, provisional_holds
from models.db import session_scope
from models.errors import Forbidden
from models.outbox import list_dead_letters, list_emails
from models.payroll import payroll as payroll_report
from models.people import get_teacher
from models.stripe_records import list_stripe_events
from webapi.admin_schemas import (
    AuditPage,
    AuditQuery,
    DayPage,
    DayQuery,
    DeadLetterPage,
    DeadLetterQuery,
    EmailPage,
    EmailQuery,
    HoldPage,
    HoldQuery,
    PaymentsPage,
    PaymentsQuery,
    StripeEventPage,
    StripeEventQuery,
)
from webapi.payroll_schemas import PayrollQuery, PayrollReport
from webapi.schemas import Problem, decode_cursor, page
from webapi.security import Identity, is_admin_email, require_identity

tag = Tag(name="admin", description="Read-only studio data for the admin (a verified email on ADMIN_EMAIL_ALLOWLIST)")
bp = APIBlueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    abp_tags=[tag],
    abp_security=[{"adminBearer": []}],
    abp_responses={401: Problem, 403: Problem, 422: Problem, 503: Problem},
)

ACTOR_LENGTH = 64  # audit_log.actor
ENTITY_LENGTH = 40  # audit_log.entity
QUERY_KEPT = 1000  # characters of the query string kept in the audit row
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def admin_actor(email: str) -> str:
    """The audit actor of an admin's request (cut to the column; the row's `after` has the whole address)."""
    return f"admin:{email}"[:ACTOR_LENGTH]


@bp.before_request
def _admin_only():
    if request.method == "OPTIONS":  # CORS preflight carries no credentials
        return
    identity = require_identity()
    if identity.role != "admin" or not identity.email_verified or not is_admin_email(identity.email):
        raise Forbidden("the admin API needs an admin token: a verified email on ADMIN_EMAIL_ALLOWLIST", type="admin-required")
    _audit_request(identity)


def _audit_request(identity: Identity) -> None:
    # Its own unit of work, committed before the read: the GET is recorded even when it then fails.
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    query = request.query_string.decode("latin-1").replace("\x00", "")[:QUERY_KEPT]
    with session_scope() as session:
        record_audit(
            session,
            actor=admin_actor(identity.email),
            action="admin.read",
            entity=rule[:ENTITY_LENGTH],
            after={"email": identity.email, "method": request.method, "query": query},
        )


@bp.after_request
def _no_store(response):
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# Cursors of the lists in time order: (instant, id) of the last row of the page ------------


def _time_cursor(at: datetime, row_id: int) -> str:
    return f"{(at - EPOCH) // MICROSECOND}.{row_id}"


def _decode_time_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The place a time cursor (`TIME_CURSOR_PATTERN`, checked by the query model) pages from."""
    if cursor is None:
        return None
    micros, _, row_id = cursor.partition(".")
    return EPOCH + int(micros) * MICROSECOND, min(int(row_id), MAX_ID)


def _time_page(rows: list[dict], limit: int, field: str) -> tuple[list[dict], str | None]:
    """Split the `limit + 1` rows a read model gave into (items, next_cursor)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    at = last[field] if isinstance(last[field], datetime) else datetime.fromisoformat(last[field])
    return rows[:limit], _time_cursor(at, last["id"])


# Dashboard -------------------------------------------------------------------------------


@bp.get("/dashboard/today", responses={200: DayPage})
def dashboard_today(query: DayQuery):
    """Every lesson and make-up of a day by start time (`studioctl dashboard today`); a
    closure day has none. The cursor is a place in that day's list."""
    day = query.date or studio_today()
    with session_scope(write=False) as session:
        schedule = day_schedule(session, day)
    # A day's schedule is computed whole (three queries); a page is a slice of it.
    start = int(query.cursor or 0)
    lessons = schedule["lessons"][start : start + query.limit]
    next_cursor = str(start + query.limit) if len(schedule["lessons"]) > start + query.limit else None
    body = {"date": schedule["date"], "closed": schedule["closed"], "items": lessons, "next_cursor": next_cursor}
    return DayPage.model_validate(body).model_dump(mode="json")


@bp.get("/dashboard/provisionals", responses={200: HoldPage})
def dashboard_provisionals(query: HoldQuery):
    """Holds waiting for a payment setup or for the parent's 3-D Secure check, soonest expiry
    first (`studioctl dashboard provisionals`)."""
    with session_scope(write=False) as session:
        rows = provisional_holds(session, after=_decode_time_cursor(query.cursor), limit=query.limit + 1)
    items, next_cursor = _time_page(rows, query.limit, "expires_at")
    return HoldPage.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")


@bp.get("/dashboard/payments", responses={200: PaymentsPage})
def dashboard_payments(query: PaymentsQuery):
    """Stripe events of the last `days` days, newest first, and every failure of those days to
    act on (`studioctl dashboard payments`)."""
    with session_scope(write=False) as session:
        activity = payment_activity(session, days=query.days, before=_decode_time_cursor(query.cursor), limit=query.limit + 1)
    items, next_cursor = _time_page(activity["events"], query.limit, "received_at")
    return PaymentsPage.model_validate(
        {"days": activity["days"], "items": items, "failures": activity["failures"], "next_cursor": next_cursor}
    ).model_dump(mode="json")


# Payroll ---------------------------------------------------------------------------------


@bp.get("/payroll", responses={200: PayrollReport, 404: Problem})
def payroll(query: PayrollQuery):
    """What each teacher is owed from `from` to `to` (both included), as `studioctl payroll
    --json`: the lessons paid (present, no_show, late_cancel unless PAY_LATE_CANCEL=false, and
    make-ups that took place, each to whoever taught it) times the teacher's rate, every paid
    lesson with its attendance or make-up id, and the lessons still unmarked (not paid). One
    teacher with `teacher` (404 when there is none); 422 when `to` is before `from`."""
    with session_scope(write=False) as session:
        only = get_teacher(session, query.teacher) if query.teacher else None
        report = payroll_report(session, first=query.from_, last=query.to, teacher=only)
    return PayrollReport.model_validate(report).model_dump(mode="json", by_alias=True)


# Outbox, Stripe, audit ---------------------------------------------------------------------


@bp.get("/emails", responses={200: EmailPage})
def emails(query: EmailQuery):
    """Emails, newest first, with their attempts and outcome (`studioctl emails list`); no
    email's content."""
    with session_scope(write=False) as session:
        rows = list_emails(session, status=query.status, limit=query.limit + 1, before_id=decode_cursor(query.cursor))
    items, next_cursor = page(rows, query.limit, key=lambda row: row["id"])
    return EmailPage.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")


@bp.get("/deadletters", responses={200: DeadLetterPage})
def deadletters(query: DeadLetterQuery):
    """Jobs that failed for good, newest first; only the open ones unless `include_resolved`
    (`studioctl deadletters list`)."""
    with session_scope(write=False) as session:
        rows = list_dead_letters(
            session, include_resolved=query.include_resolved, limit=query.limit + 1, before_id=decode_cursor(query.cursor)
        )
    items, next_cursor = page(rows, query.limit, key=lambda row: row["id"])
    return DeadLetterPage.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")


@bp.get("/stripe/events", responses={200: StripeEventPage})
def stripe_events(query: StripeEventQuery):
    """Received Stripe webhook events, newest first, without their payloads (`studioctl stripe events`)."""
    with session_scope(write=False) as session:
        rows = list_stripe_events(session, status=query.status, limit=query.limit + 1, before_id=decode_cursor(query.cursor))
    items, next_cursor = page(rows, query.limit, key=lambda row: row["id"])
    return StripeEventPage.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")


def _since(value: datetime | date | None) -> datetime | None:
    """`since` as a UTC instant: a day starts at midnight in the studio's zone. Beyond what a
    datetime holds once in UTC (year 1 east of Greenwich, year 9999 west) is clamped."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=current_app.config["STUDIO_SETTINGS"].tz)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


@bp.get("/audit", responses={200: AuditPage})
def audit(query: AuditQuery):
    """The audit trail, newest first: who changed what, with before/after snapshots
    (credentials redacted), of one `entity` table and `since` an instant or day when given."""
    with session_scope(write=False) as session:
        rows = list_audit(
            session, entity=query.entity, since=_since(query.since), limit=query.limit + 1, before_id=decode_cursor(query.cursor)
        )
    items, next_cursor = page(rows, query.limit, key=lambda row: row["id"])
    return AuditPage.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")
