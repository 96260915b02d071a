"""Teachers' time off (issue 15, item 2): the table.

A row says a teacher is away from `starts_on` to `ends_on` (both included), optionally with a
substitute who teaches their lessons on those dates. Who taught a lesson is recorded on the
lesson itself (`attendance.taught_by_id`, `makeup.taught_by_id`; empty = the slot's teacher),
so payroll reads one record of what happened.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import utc_column, utcnow


class TimeOff(SQLModel, table=True):
    """A teacher's absence over a date range, with or without a substitute."""

    __tablename__ = "time_off"
    __table_args__ = (
        sa.CheckConstraint("ends_on >= starts_on", name="dates_ordered"),
        sa.CheckConstraint("substitute_id IS NULL OR substitute_id <> teacher_id", name="substitute_not_self"),
    )

    id: int | None = Field(default=None, primary_key=True)
    teacher_id: int = Field(foreign_key="teacher.id", index=True, ondelete="RESTRICT")
    starts_on: date
    ends_on: date
    substitute_id: int | None = Field(default=None, foreign_key="teacher.id", index=True, ondelete="RESTRICT")
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
