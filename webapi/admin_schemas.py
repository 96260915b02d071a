"""Query and response models of the read-only admin API (`webapi/admin.py`).

The rows are the read models' own (`models.dashboard`, `models.outbox`,
`models.stripe_records`, `models.audit`), described here for the OpenAPI document; none of
them carries a credential (no Stripe payload, no email context, no calendar token).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from models.billing import EVENT_STATUSES
from models.outbox import EMAIL_STATUSES
from webapi.schemas import PageQuery

# The cursor of the lists in time order (holds by expiry, payments by arrival): the time of
# the page's last row in microseconds since 1970 and its id. 17 digits stay below year 5000.
TIME_CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9]{1,10}$"
# The cursor of a day's schedule (computed whole, then sliced): how many lessons came before.
POSITION_CURSOR_PATTERN = r"^[0-9]{1,6}$"
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _one_of(values: tuple[str, ...]) -> str:
    return f"^({'|'.join(values)})$"


def _iso_text(value: Any) -> Any:
    """A date or instant is written YYYY-MM-DD…: pydantic would read `12345` as Unix time, a
    value the document (`format: date` / `date-time`) does not allow."""
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date (YYYY-MM-DD) or date-time")
    return value


class DayQuery(PageQuery):
    date: dt.date | None = Field(None, description="the day, YYYY-MM-DD (default: today in the studio's time zone)")
    cursor: str | None = Field(
        None, pattern=POSITION_CURSOR_PATTERN, description="`next_cursor` of the previous page (how many lessons came before)"
    )

    _date_is_iso = field_validator("date", mode="before")(_iso_text)


class HoldQuery(PageQuery):
    cursor: str | None = Field(None, pattern=TIME_CURSOR_PATTERN, description="`next_cursor` of the previous page")


class PaymentsQuery(HoldQuery):
    days: int = Field(7, ge=1, le=3660, description="how many days back")


class EmailQuery(PageQuery):
    status: str | None = Field(None, pattern=_one_of(EMAIL_STATUSES), description=" | ".join(EMAIL_STATUSES))


class DeadLetterQuery(PageQuery):
    include_resolved: bool = Field(False, description="also the dead letters an admin resolved")


class StripeEventQuery(PageQuery):
    status: str | None = Field(None, pattern=_one_of(EVENT_STATUSES), description=" | ".join(EVENT_STATUSES))


class AuditQuery(PageQuery):
    entity: str | None = Field(
        None, min_length=1, max_length=40, pattern=r"^[^\x00-\x1f]*$", description="a table (`enrollment`, `payee`...)"
    )
    since: AwareDatetime | dt.date | None = Field(
        None, description="rows written at or after this instant (with its UTC offset), or this day in the studio's time zone"
    )

    _since_is_iso = field_validator("since", mode="before")(_iso_text)


class LessonOut(BaseModel):
    start: str = Field(description="studio-local wall clock, HH:MM")
    end: str
    starts_at: dt.datetime = Field(description="ISO 8601 with the studio's UTC offset on that date")
    dst_change: bool = Field(description="the UTC offset differs from the same lesson a week earlier")
    teacher: str
    substitute: str | None = Field(None, description="who teaches instead while `teacher` is away (null: `teacher` does)")
    student: str
    instrument: str | None = None
    kind: Literal["lesson", "make_up"]
    enrollment_id: int | None = None
    makeup_id: int | None = None
    timeslot_id: int
    attendance: str | None = None
    location: str | None = Field(None, description="where: the slot's room's location (null: no room set)")
    room: str | None = None


class DayPage(BaseModel):
    date: dt.date
    closed: bool = Field(description="a closure day of the semester")
    items: list[LessonOut]
    next_cursor: str | None = None


class HoldOut(BaseModel):
    id: int
    teacher: str
    student: str
    instrument: str
    payee: str = Field(description="the family's email")
    slot: str
    expires_at: dt.datetime
    seconds_left: int
    overdue: bool
    pipeline_state: str | None = None
    status: str = Field(
        description="provisional | action_required (waiting for the parent's 3-D Secure check) | offered (a waiting-list offer)"
    )


class HoldPage(BaseModel):
    items: list[HoldOut]
    next_cursor: str | None = None


class PaymentEventOut(BaseModel):
    id: int
    stripe_event_id: str
    type: str
    status: str
    received_at: dt.datetime
    error: str | None = None


class FailureOut(BaseModel):
    kind: str = Field(description="stripe_event | enrollment_failed | enrollment_past_due")
    id: int
    what: str | None = None
    error: str | None = None


class PaymentsPage(BaseModel):
    days: int
    items: list[PaymentEventOut] = Field(description="Stripe events received in those days, newest first")
    failures: list[FailureOut] = Field(description="every failure of those days to act on (not paged: on each page)")
    next_cursor: str | None = None


class EmailOut(BaseModel):
    id: int
    template: str
    recipient: str
    status: str
    attempts: int
    subject: str
    provider_message_id: str | None = None
    error: str | None = None
    created_at: dt.datetime
    sent_at: dt.datetime | None = None


class EmailPage(BaseModel):
    items: list[EmailOut]
    next_cursor: str | None = None


class DeadLetterOut(BaseModel):
    id: int
    kind: str
    payload: dict[str, Any] = Field(description="what the replay needs (ids)")
    error: str
    created_at: dt.datetime
    retried_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None = None


class StripeEventOut(BaseModel):
    id: int
    stripe_event_id: str
    type: str
    status: str
    attempts: int
    error: str | None = None
    received_at: dt.datetime
    processed_at: dt.datetime | None = None


class StripeEventPage(BaseModel):
    items: list[StripeEventOut]
    next_cursor: str | None = None


class AuditOut(BaseModel):
    id: int
    actor: str = Field(description="admin, admin:<email>, payee:<id>, worker...")
    action: str
    entity: str
    entity_id: str | None = None
    before: dict[str, Any] | None = Field(None, description="the row before (credentials `[redacted]`)")
    after: dict[str, Any] | None = None
    created_at: dt.datetime


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None = None
