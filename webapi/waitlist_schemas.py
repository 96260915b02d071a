"""Request and response models of the waiting list and its offers (issue 14)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from webapi.schemas import Id, Input, InstrumentName

Weekday = Annotated[int, Field(ge=0, le=6)]
Minute = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class EntryCreate(Input):
    student_id: Id
    instrument: InstrumentName
    teacher_id: Id | None = Field(None, description="only this teacher's slots; default: any who teaches the instrument")
    weekdays: list[Weekday] | None = Field(None, max_length=7, description="0 = Monday; default: any day")
    earliest: Minute | None = Field(None, description="the slot starts at or after (HH:MM, the studio's time)")
    latest: Minute | None = Field(None, description="the slot starts at or before (HH:MM, the studio's time)")


class EntryOut(BaseModel):
    id: int
    student_id: int
    instrument: str | None
    teacher_id: int | None
    weekdays: list[int] | None
    earliest: str | None
    latest: str | None
    status: Literal["open", "booked", "removed"]
    created_at: datetime


class EntryList(BaseModel):
    items: list[EntryOut]


class EntryPath(BaseModel):
    entry_id: Id


class OfferOut(BaseModel):
    id: int
    entry_id: int
    timeslot_id: int
    student_id: int
    status: Literal["open", "accepted", "declined", "lapsed"]
    expires_at: datetime
    booking_id: int | None = Field(description="the booking an acceptance made")


class OfferList(BaseModel):
    items: list[OfferOut]


class OfferPath(BaseModel):
    offer_id: Id


class OfferAccept(Input):
    plan: Id | Literal["weekly", "monthly", "semester"] = Field(description="a plan id or a frequency")


class OfferAccepted(BaseModel):
    id: int = Field(description="the booking's id")
    status: str
    expires_at: datetime | None
    status_url: str
