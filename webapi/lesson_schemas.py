"""Models of `GET /parent/lessons`: a family's lessons over a range of dates."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.lessons import DEFAULT_WEEKS, MAX_WEEKS
from webapi.schemas import Parameters

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_date(value: Any) -> Any:
    """A date is written YYYY-MM-DD: pydantic would read `12345` as Unix time, a value the
    document (`format: date`) does not allow."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date (YYYY-MM-DD)")
    return value


class LessonsQuery(Parameters):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.date | None = Field(None, alias="from", description="the first day, YYYY-MM-DD (default: today)")
    to: dt.date | None = Field(
        None,
        description=f"the last day, included (default: {DEFAULT_WEEKS} weeks from `from`; at most {MAX_WEEKS} weeks after it)",
    )

    _dates_are_iso = field_validator("from_", "to", mode="before")(_iso_date)


class LessonAttendance(BaseModel):
    id: int
    status: str = Field(description="`present`, `excused`, `no_show`, `teacher_cancelled`, `late_cancel`")


class FamilyLesson(BaseModel):
    date: dt.date
    starts_at: dt.datetime = Field(description="ISO 8601 with the studio's UTC offset on that date (right across DST)")
    kind: Literal["lesson", "makeup"] = Field(description="a weekly lesson of a booking, or a booked make-up")
    student_id: int
    student: str
    teacher: str = Field(description="the slot's teacher")
    substitute: str | None = Field(description="who teaches the lesson instead while `teacher` is away (null: `teacher` does)")
    instrument: str | None
    timeslot_id: int
    enrollment_id: int | None = Field(description="the booking of a weekly lesson (null for a make-up)")
    makeup_id: int | None = Field(description="the make-up credit of a make-up lesson (null for a weekly one)")
    attendance: LessonAttendance | None = Field(description="the lesson's mark once recorded (null until then)")
    tentative: bool = Field(description="the booking is a hold not paid yet")
    location: str | None = Field(None, description="the location the lesson is at (null: not said)")
    room: str | None = Field(None, description="the room of that location (null: not said)")


class LessonList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.date = Field(alias="from")
    to: dt.date
    items: list[FamilyLesson] = Field(description="by start; closure dates are no lessons")
