"""Request and response models of a family's bookings, absences and make-ups (`/parent/bookings`,
`/parent/makeups`; pydantic v2, the OpenAPI spec comes from them).

The same rules as `webapi.schemas`: inputs forbid extra fields, ids are bounded to PostgreSQL's
integer range and text refuses NUL bytes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from webapi.schemas import Id, Input, InstrumentName, Parameters

# Bookings --------------------------------------------------------------------------------


class BookingCreate(Input):
    student_id: Id
    timeslot_id: Id
    instrument: InstrumentName
    plan: Id | Literal["weekly", "monthly", "semester"] = Field(description="a plan id or a frequency")
    start_date: date | None = Field(None, description="first lesson on or after; default: the next one")


class BookingHeaders(Parameters):
    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="retries with the same key and body return the first answer",
    )
    model_config = ConfigDict(populate_by_name=True)


class BookingAccepted(BaseModel):
    id: int
    status: str
    expires_at: datetime | None
    status_url: str


class PaymentAction(BaseModel):
    """What the parent must do to finish a payment their bank wants to check (3-D Secure)."""

    type: Literal["authenticate_payment"]
    client_secret: str = Field(description="the PaymentIntent's client secret, for Stripe.js `confirmCardPayment`")
    url: str | None = Field(default=None, description="Stripe's hosted invoice page, when there is one")


class BookingOut(BaseModel):
    id: int
    status: str
    student_id: int
    timeslot_id: int
    instrument: str
    plan_id: int | None = None
    start_date: date
    end_date: date | None = Field(
        None, description="its last lesson date, once it ends (cancelled, cancelled at its period end, moved); null: no end"
    )
    cancel_at_period_end: bool = Field(
        False, description="the family cancelled it: it is not renewed and ends with `end_date`, the last lesson paid for"
    )
    moved_from: int | None = Field(None, description="the booking this one continues after a move to another slot")
    moved_to: int | None = Field(None, description="the booking that continues this one after a move (after `end_date`)")
    expires_at: datetime | None = None
    failure_reason: str | None = None
    action: PaymentAction | None = Field(
        default=None, description="set while `action_required` (or `past_due` on a renewal that needs authentication)"
    )
    status_url: str
    created_at: datetime


class BookingPage(BaseModel):
    items: list[BookingOut]
    next_cursor: str | None = None


class BookingPath(BaseModel):
    booking_id: Id


class BookingCancelled(BookingOut):
    """A booking after a cancel request: a hold `cancelled` at once, or a weekly/monthly booking
    still `active` until `end_date` (its last lesson in the period paid for), Stripe told not to renew."""

    cancel_at_period_end: bool = Field(
        description="Stripe will not renew the subscription: the lessons end with `end_date`, then the booking is `cancelled`"
    )


class BookingMove(Input):
    timeslot_id: Id = Field(description="a free slot of a teacher who teaches the booking's instrument")
    start_date: date | None = Field(
        None, description="the first lesson in the new slot on or after this date; default: the next one the slot is free for"
    )


# Absences --------------------------------------------------------------------------------


class AbsenceCreate(Input):
    date: Annotated[date, Field(description="the lesson to call off: a lesson of this booking that has not started")]
    reason: Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")] | None = Field(
        None, description="for the studio's record (the attendance note)"
    )


class AbsenceOut(BaseModel):
    attendance_id: int
    status: Literal["excused", "late_cancel"] = Field(
        description="`excused`: called off with at least MAKEUP_NOTICE_HOURS' notice; `late_cancel`: later, no credit"
    )
    makeup_id: int | None = Field(description="the make-up credit it earned (`GET /parent/makeups`), null when none")
    credit_reason: str | None = Field(description="why no credit (late, or past the semester's cap); null when one was earned")


# Make-ups --------------------------------------------------------------------------------


class MakeupOut(BaseModel):
    id: int
    student_id: int
    status: str
    instrument: str | None = None
    reason: str | None = None
    expires_on: date
    timeslot_id: int | None = None
    lesson_date: date | None = None


class MakeupPage(BaseModel):
    items: list[MakeupOut]
    next_cursor: str | None = None


class MakeupPath(BaseModel):
    makeup_id: Id


class MakeupSlotOut(BaseModel):
    timeslot_id: int
    teacher_id: int
    teacher_name: str
    date: date
    start: datetime


class MakeupSlotList(BaseModel):
    items: list[MakeupSlotOut]


class MakeupBook(Input):
    timeslot_id: Id
    date: date
