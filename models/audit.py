"""The audit trail: who changed what, with before/after snapshots, for every write."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, Session, SQLModel, select

from models.base import json_column, utc_column, utcnow
from models.plain import plain


class AuditLog(SQLModel, table=True):
    """One write: the actor (`admin`, `payee:<id>`, `worker`), the action and the entity's states."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=64, index=True)
    entity: str = Field(max_length=40)
    entity_id: str | None = Field(default=None, max_length=64)
    before: dict | None = Field(default=None, sa_column=json_column())
    after: dict | None = Field(default=None, sa_column=json_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False, index=True))


# Columns that are credentials: the audit trail (and its CSV export) records that they
# exist, never their value.
SECRET_COLUMNS = frozenset({"calendar_token", "action_client_secret", "code_hash"})
REDACTED = "[redacted]"


def snapshot(obj: SQLModel) -> dict:
    """A JSON-safe dict of a row's columns (for audit before/after); secrets are redacted."""
    return {
        column.name: REDACTED if column.name in SECRET_COLUMNS else plain(getattr(obj, column.name))
        for column in obj.__table__.columns
    }


def change_audited(session: Session, row: SQLModel, *, actor: str, action: str, **changes) -> SQLModel:
    """Set `changes` on `row`, flush, and record the audit row with its before/after snapshots."""
    before = snapshot(row)
    for name, value in changes.items():
        setattr(row, name, value)
    session.add(row)
    session.flush()
    record_audit(session, actor=actor, action=action, entity=row, before=before, after=snapshot(row))
    return row


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: SQLModel | str,
    entity_id=None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditLog:
    """Add an audit row in the caller's transaction."""
    if isinstance(entity, SQLModel):
        entity_id = entity_id if entity_id is not None else getattr(entity, "id", None)
        entity = entity.__tablename__
    row = AuditLog(
        actor=actor,
        action=action,
        entity=str(entity),
        entity_id=None if entity_id is None else str(entity_id),
        before=before,
        after=after,
    )
    session.add(row)
    return row


def _redacted(value: dict | None) -> dict | None:
    """A snapshot with any credential column's value hidden (rows are redacted when written;
    this covers ones written before a column was known to be a secret)."""
    if value is None:
        return None
    return {name: REDACTED if name in SECRET_COLUMNS else item for name, item in value.items()}


def list_audit(
    session: Session, *, entity: str | None = None, since: datetime | None = None, limit: int = 50, before_id: int | None = None
) -> list[dict]:
    """The newest `limit` audit rows (of one `entity` table, when given; written at or after
    `since`, when given; older than `before_id`, when given: the admin API's pages), newest first,
    as plain rows with credentials redacted."""
    statement = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if entity is not None:
        statement = statement.where(AuditLog.entity == entity)
    if since is not None:
        statement = statement.where(AuditLog.created_at >= since)
    if before_id is not None:
        statement = statement.where(AuditLog.id < before_id)
    return [
        {
            "id": row.id,
            "actor": row.actor,
            "action": row.action,
            "entity": row.entity,
            "entity_id": row.entity_id,
            "before": _redacted(row.before),
            "after": _redacted(row.after),
            "created_at": row.created_at,
        }
        for row in session.exec(statement).all()
    ]
