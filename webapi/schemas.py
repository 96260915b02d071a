"""Request and response models of the parent API (pydantic v2; the OpenAPI spec comes from them).

Inputs are separate `...Create` / `...Update` models with `extra="forbid"`: a field the
client may not set (`payee_id`, `status`...) is a 422 naming it, never silently applied.
Ids are bounded to PostgreSQL's integer range and text refuses NUL bytes, so no client
input reaches the database in a shape it would reject with a 500.
The models of bookings, absences and make-ups are in `webapi.booking_schemas`.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from models.base import MAX_ID

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=120, pattern=r"^[^\x00-\x1f]*$")]
Text = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
Phone = Annotated[str, StringConstraints(max_length=40, pattern=r"^[0-9+()\-. ]*$")]
InstrumentName = Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f]*$")]
LocationRef = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f]*$")]


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


_SCHEMAS: dict[tuple, str] = {}


class Parameters(BaseModel):
    """Base of query-string and header models: their JSON schema is built once per class.

    flask-openapi3 calls `model_json_schema()` of the query and header models on every
    request (to tell list fields from scalars); pydantic rebuilds it each time, ~1 ms of
    CPU a request. A class's schema never changes, so it is cached as JSON text and each
    caller gets a fresh copy (the spec builder may change what it gets); `json.loads` of
    it costs a tenth of a `copy.deepcopy`.
    """

    @classmethod
    def model_json_schema(cls, *args, **kwargs):  # noqa: D102 - pydantic's, cached
        key = (cls, args, tuple(sorted(kwargs.items())))
        text = _SCHEMAS.get(key)
        if text is None:
            text = _SCHEMAS[key] = json.dumps(super().model_json_schema(*args, **kwargs))
        return json.loads(text)


# Problems and pages ------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the field at fault (`body` for the whole body)")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, always served as `application/problem+json`."""

    type: str = Field(description="stable slug to switch on (`slot-taken`, `not-found`, `validation-error`...)")
    title: str = Field(description="fixed per type")
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="the request's path")
    field: str | None = Field(None, description="the field a domain refusal is about")
    errors: list[FieldError] | None = Field(None, description="422 `validation-error`: every field at fault")
    request_id: str | None = Field(None, description="the request's id, also in the `X-Request-ID` answer header")


CURSOR_PATTERN = r"^[0-9]{1,10}$"


class PageQuery(Parameters):
    """`limit` (1–100) and the `cursor` of the previous page's `next_cursor`."""

    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(
        None,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page (the id of its last item; the page goes on past it)",
    )


def encode_cursor(row_id: int) -> str:
    """The cursor of the page after the row `row_id` (keyset pagination)."""
    return str(row_id)


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor (`CURSOR_PATTERN`, checked by the query model) pages from. Every value the
    documented pattern allows is a place in the keyset, so it is taken as such: past the largest
    id is an empty page, never a refusal of a value the document says is valid."""
    if cursor is None:
        return None
    return min(int(cursor), MAX_ID)


def page(rows: list, limit: int, key=lambda row: row.id) -> tuple[list, str | None]:
    """Split the `limit + 1` rows a query read into (items, next_cursor)."""
    if len(rows) > limit:
        return rows[:limit], encode_cursor(key(rows[limit - 1]))
    return rows, None


# Auth ------------------------------------------------------------------------------------


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


# Public ----------------------------------------------------------------------------------


class InstrumentOut(BaseModel):
    id: int
    name: str


class InstrumentPage(BaseModel):
    items: list[InstrumentOut]
    next_cursor: str | None = None


class LocationOut(BaseModel):
    id: int
    name: str
    address: str | None


class LocationList(BaseModel):
    items: list[LocationOut]


class TeacherQuery(PageQuery):
    instrument: InstrumentName | None = None


class TeacherOut(BaseModel):
    id: int
    name: str
    bio: str | None = None
    instruments: list[str]


class TeacherPage(BaseModel):
    items: list[TeacherOut]
    next_cursor: str | None = None


class TimeslotQuery(PageQuery):
    teacher_id: Id | None = None
    instrument: InstrumentName | None = None
    weekday: int | None = Field(None, ge=0, le=6, description="0 = Monday")
    available: bool | None = None
    location: LocationRef | None = Field(
        None,
        description="only the slots in this location's rooms: its id or its name (any case); unknown: 404 `unknown-location`",
    )


class TimeslotOut(BaseModel):
    id: int
    teacher_id: int
    teacher_name: str
    instruments: list[str]
    weekday: int = Field(description="0 = Monday")
    start: str = Field(description="studio-local wall clock, HH:MM")
    end: str
    available: bool = Field(description="bookable from some date: no live booking holds it forever")
    next_occurrence: datetime | None = Field(description="ISO 8601 with the studio's UTC offset on that date")
    available_from: date | None = Field(
        description="the first lesson a booking made now would start on (after the current booking ends); null when not available"
    )
    location: str | None = Field(description="the location its lessons are at (null: not said)")
    room: str | None = Field(description="the room of that location (null: not said)")


class TimeslotPage(BaseModel):
    items: list[TimeslotOut]
    next_cursor: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="each dependency (database, redis) → `ok` or what is wrong")


# Payee and students ----------------------------------------------------------------------


class Reminders(Input):
    """The family's lesson reminder channels (a day ahead); left out: unchanged. SMS needs a phone
    number (this request's `phone`, or the one on record), validated and stored in E.164."""

    email: bool | None = None
    sms: bool | None = None


class RemindersOut(BaseModel):
    email: bool
    sms: bool


class PayeePatch(Input):
    """A partial update of the caller's payee (fields left out are unchanged)."""

    name: Name | None = None
    phone: Phone | None = None
    reminders: Reminders | None = None


class PayeeUpdate(Input):
    """What a parent may set on their own record (the email comes from the sign-in).

    `invite_code`: the one-time code the studio gave the family (`studioctl payees invite`);
    it links this sign-in to the family record the studio made, whatever the sign-in's email.
    """

    name: Name | None = None
    phone: Phone | None = None
    invite_code: str | None = Field(None, min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    reminders: Reminders | None = None


class PayeeOut(BaseModel):
    id: int
    email: str
    name: str
    phone: str | None = None
    has_billing_customer: bool
    reminders: RemindersOut
    calendar_url: str = Field(description="subscribe URL of the family calendar (contains a secret token)")


class StudentCreate(Input):
    name: Name
    birth_date: date | None = None
    notes: Text | None = None


def _not_nullable(*names: str):
    """A `json_schema_extra` documenting fields that may be left out but never sent as null
    (their Python default is None; a validator refuses an explicit null)."""

    def rewrite(schema: dict) -> None:
        for name in names:
            field = schema["properties"][name]
            [branch] = [branch for branch in field.pop("anyOf") if branch.get("type") != "null"]
            field.pop("default", None)
            field.update(branch)

    return rewrite


class StudentUpdate(Input):
    """Only the fields sent change; `null` clears `birth_date` or `notes`, never `name`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_not_nullable("name"))

    name: Name | None = None
    birth_date: date | None = None
    notes: Text | None = None

    @field_validator("name")
    @classmethod
    def _name_cannot_be_cleared(cls, name: str | None) -> str:
        if name is None:
            raise ValueError("a student's name cannot be cleared")
        return name


class StudentOut(BaseModel):
    id: int
    name: str
    birth_date: date | None = None
    notes: str | None = None


class StudentPage(BaseModel):
    items: list[StudentOut]
    next_cursor: str | None = None


class StudentPath(BaseModel):
    student_id: Id


# Payment setup and calendar --------------------------------------------------------------


class PaymentSetupOut(BaseModel):
    client_secret: str


class CalendarQuery(Parameters):
    token: str | None = Field(None, min_length=1, max_length=64, description="the payee's calendar token")


class CalendarTokenOut(BaseModel):
    calendar_url: str = Field(description="the family calendar's new subscribe URL; the previous one answers 404 from now on")
