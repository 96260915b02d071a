"""Operations health: what the workers leave behind to show they run, and the reads
`studioctl doctor` (and `/readyz`) make of the database.

- `WorkerHeartbeat`: one row per consumer process (`host:pid`), its `seen_at` moved by a
  periodic task every minute (`workers.periodic.periodic_heartbeat`): a consumer that stops
  consuming stops moving it, whether it died or its queue stalled.
- `JobRun`: one row per periodic job, the last run's start, end and outcome (written by
  `workers.periodic.run_job`, for the consumer's runs and `studioctl jobs run` alike).
- `schema_status()`: the database's revision against the migrations' head.
- The counts an operator acts on: open dead letters, holds past their expiry, the active
  plans whose Stripe Prices should exist; `operations_gauges()`, what `/metrics` reads of them.

Both tables are written with an upsert keyed by the name: two worker threads beating at once
update one row instead of racing to insert it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, func, select

from models.base import utc_column, utcnow
from models.billing import Plan, StripeEvent
from models.db import NotMigrated, get_engine, is_not_migrated
from models.enrollment import HOLD_STATUSES, Enrollment
from models.outbox import DeadLetter

# Heartbeats of consumers gone this long are dropped when the next one is written.
HEARTBEAT_KEPT_FOR = timedelta(days=1)
ERROR_LENGTH = 500


class WorkerHeartbeat(SQLModel, table=True):
    """A consumer process's last sign of consuming its queue."""

    __tablename__ = "worker_heartbeat"

    consumer: str = Field(primary_key=True, max_length=255)  # host:pid
    started_at: datetime = Field(sa_column=utc_column(nullable=False))
    seen_at: datetime = Field(sa_column=utc_column(nullable=False))


class JobRun(SQLModel, table=True):
    """The last run of one periodic job."""

    __tablename__ = "job_run"

    name: str = Field(primary_key=True, max_length=64)
    last_started_at: datetime = Field(sa_column=utc_column(nullable=False))
    last_finished_at: datetime = Field(sa_column=utc_column(nullable=False))
    last_succeeded_at: datetime | None = Field(default=None, sa_column=utc_column())
    last_error: str | None = Field(default=None, max_length=ERROR_LENGTH)  # None: the last run succeeded
    runs: int = Field(default=0)


def _upsert(session: Session, model: type[SQLModel], values: dict, *, key: str, update: Callable[[Any], dict]) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE on either engine; `update(excluded)` gives the new values."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(model).values(**values)
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=update(statement.excluded)))


def record_heartbeat(session: Session, *, consumer: str, started_at: datetime, now: datetime | None = None) -> None:
    """The consumer `consumer` (host:pid, up since `started_at`) is consuming now; heartbeats
    of consumers silent for a day are dropped."""
    now = now or utcnow()
    _upsert(
        session,
        WorkerHeartbeat,
        {"consumer": consumer[:255], "started_at": started_at, "seen_at": now},
        key="consumer",
        update=lambda excluded: {"started_at": excluded.started_at, "seen_at": excluded.seen_at},
    )
    session.execute(sa.delete(WorkerHeartbeat).where(col(WorkerHeartbeat.seen_at) < now - HEARTBEAT_KEPT_FOR))


def record_job_run(session: Session, *, name: str, started_at: datetime, finished_at: datetime, error: str | None) -> None:
    """Periodic job `name` ran from `started_at` to `finished_at`; `error` None when it succeeded."""
    _upsert(
        session,
        JobRun,
        {
            "name": name,
            "last_started_at": started_at,
            "last_finished_at": finished_at,
            "last_succeeded_at": None if error else finished_at,
            "last_error": error[:ERROR_LENGTH] if error else None,
            "runs": 1,
        },
        key="name",
        update=lambda excluded: {
            "last_started_at": excluded.last_started_at,
            "last_finished_at": excluded.last_finished_at,
            # A failed run keeps the time of the last one that succeeded.
            "last_succeeded_at": func.coalesce(excluded.last_succeeded_at, col(JobRun.last_succeeded_at)),
            "last_error": excluded.last_error,
            "runs": col(JobRun.runs) + 1,
        },
    )


def consumers_seen(session: Session) -> list[dict]:
    """Every consumer's heartbeat kept (the last day), most recently seen first."""
    rows = session.exec(select(WorkerHeartbeat).order_by(col(WorkerHeartbeat.seen_at).desc())).all()
    return [{"consumer": row.consumer, "started_at": row.started_at, "seen_at": row.seen_at} for row in rows]


def job_runs(session: Session) -> dict[str, dict]:
    """The last run of each periodic job that ever ran, by name."""
    return {
        row.name: {
            "last_started_at": row.last_started_at,
            "last_finished_at": row.last_finished_at,
            "last_succeeded_at": row.last_succeeded_at,
            "last_error": row.last_error,
            "runs": row.runs,
        }
        for row in session.exec(select(JobRun)).all()
    }


def open_dead_letters(session: Session) -> dict:
    """Dead letters nobody resolved: how many, the oldest's time, and how many of each kind."""
    rows = session.exec(
        select(DeadLetter.kind, func.count(), func.min(DeadLetter.created_at))
        .where(col(DeadLetter.resolved_at).is_(None))
        .group_by(DeadLetter.kind)
        .order_by(DeadLetter.kind)
    ).all()
    oldest = min((row[2] for row in rows), default=None)
    return {"count": sum(row[1] for row in rows), "oldest": oldest, "kinds": {row[0]: row[1] for row in rows}}


def holds_overdue(session: Session, *, expired_before: datetime, limit: int = 10) -> dict:
    """Holds (provisional, or waiting for a 3-D Secure check) whose expiry passed before
    `expired_before`: the expiry job, which runs every minute, should have ended them."""
    overdue = (col(Enrollment.status).in_(HOLD_STATUSES), col(Enrollment.provisional_expires_at) < expired_before)
    count = session.exec(select(func.count()).select_from(Enrollment).where(*overdue)).one()
    rows = session.exec(
        select(Enrollment.id, Enrollment.provisional_expires_at)
        .where(*overdue)
        .order_by(col(Enrollment.provisional_expires_at), col(Enrollment.id))
        .limit(limit)
    ).all()
    return {"count": count, "ids": [row[0] for row in rows], "oldest_expiry": rows[0][1] if rows else None}


def operations_gauges(session: Session, *, now: datetime | None = None) -> dict:
    """What `/metrics` reads at each scrape: holds by status, holds past their expiry, open dead
    letters, Stripe events stored and not processed yet and the oldest one's age in seconds."""
    now = now or utcnow()
    holds = dict.fromkeys(HOLD_STATUSES, 0)
    holds.update(
        session.exec(
            select(Enrollment.status, func.count()).where(col(Enrollment.status).in_(HOLD_STATUSES)).group_by(Enrollment.status)
        ).all()
    )
    waiting, oldest = session.exec(
        select(func.count(), func.min(StripeEvent.received_at)).where(StripeEvent.status == "received")
    ).one()
    return {
        "holds_open": holds,
        "holds_past_expiry": holds_overdue(session, expired_before=now, limit=0)["count"],
        "dead_letters_open": open_dead_letters(session)["count"],
        "webhook_events_waiting": waiting,
        "webhook_oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else 0.0,
    }


def active_plans(session: Session) -> list[dict]:
    """The plans families can book, with what their Stripe Price must say."""
    rows = session.exec(select(Plan).where(col(Plan.active).is_(True)).order_by(col(Plan.id))).all()
    return [
        {
            "id": plan.id,
            "name": plan.name,
            "frequency": plan.frequency,
            "amount_cents": plan.amount_cents,
            "currency": plan.currency,
            "stripe_price_id": plan.stripe_price_id,
        }
        for plan in rows
    ]


# The schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database's schema stands against these migrations.

    `state`: `at_head`, `behind` (an older revision: upgrade), `unknown` (a revision these
    migrations do not know: migrated by a newer release), `not_migrated` (no schema, or no
    SQLite file) or `unreachable` (`error` says why, in one line)."""

    state: str
    revisions: frozenset[str] = field(default_factory=frozenset)
    head: frozenset[str] = field(default_factory=frozenset)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "at_head"


def schema_status(engine: Engine | None = None) -> SchemaStatus:
    """Read the database's Alembic revision afresh (nothing cached) and compare it with the
    head of the version files. `engine`: the process's by default."""
    from migrations import head_revisions, known_revisions

    head = head_revisions()
    try:
        with (engine or get_engine()).connect() as connection:
            revisions = frozenset(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except NotMigrated:  # a SQLite file that is not there
        return SchemaStatus("not_migrated", head=head)
    except Exception as error:  # a probe: whatever stops the read is the answer
        if is_not_migrated(error):
            return SchemaStatus("not_migrated", head=head)
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        return SchemaStatus("unreachable", head=head, error=lines[0] if lines else type(error).__name__)
    if revisions == head:
        return SchemaStatus("at_head", revisions, head)
    if not revisions:
        return SchemaStatus("not_migrated", revisions, head)
    if revisions - known_revisions():
        return SchemaStatus("unknown", revisions, head)
    return SchemaStatus("behind", revisions, head)
