"""Shared table plumbing: the metadata naming convention, UTC timestamps, JSON columns."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import SQLModel

# Stable constraint names so Alembic migrations can refer to them on every engine.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Primary keys are PostgreSQL `integer`: a larger id names no row (and must not reach a query).
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """An aware datetime stored in UTC; SQLite gives it back aware too.

    PostgreSQL keeps `timestamptz`; SQLite has no zone, so values are normalised to UTC on
    the way in and tagged UTC on the way out. Naive values are refused: they are bugs.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utc_column(*, nullable: bool = True, index: bool = False, default=None) -> sa.Column:
    """A `UTCDateTime` column; `default` is a callable such as `utcnow`."""
    return sa.Column(UTCDateTime(), nullable=nullable, index=index, default=default)


def json_column(*, nullable: bool = True) -> sa.Column:
    """A JSON column (JSONB-compatible `json` on PostgreSQL, text on SQLite)."""
    return sa.Column(sa.JSON(), nullable=nullable)


def enum_check(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    """A CHECK that a status column holds one of `values` (portable, no PG enum type)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=name)
