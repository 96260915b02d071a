"""Models of `GET /admin/payroll`: what each teacher is owed for a range of dates
(`models.payroll`, the read model `studioctl payroll --json` prints)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from webapi.admin_schemas import _iso_text
from webapi.schemas import Parameters


class PayrollQuery(Parameters):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.date = Field(alias="from", description="the first day, YYYY-MM-DD")
    to: dt.date = Field(description="the last day, included (not before `from`)")
    teacher: str | None = Field(
        None,
        min_length=1,
        max_length=254,
        pattern=r"^[^\x00-\x1f]*$",
        description="only this teacher, by email or id (404 if none)",
    )

    _dates_are_iso = field_validator("from_", "to", mode="before")(_iso_text)


class PayrollLesson(BaseModel):
    kind: Literal["lesson", "makeup"] = Field(description="a weekly lesson (its attendance mark) or a make-up")
    attendance_id: int | None = Field(description="the attendance mark that pays a weekly lesson (null for a make-up)")
    enrollment_id: int | None
    makeup_id: int | None = Field(description="the make-up credit of a make-up (null for a weekly lesson)")
    status: str = Field(description="present | no_show | late_cancel (unless PAY_LATE_CANCEL=false) | makeup (taught)")
    date: dt.date
    start: str = Field(description="studio-local wall clock, HH:MM")
    timeslot_id: int
    student_id: int
    student: str
    substitute_for_id: int | None = Field(description="the slot's teacher, when this teacher stood in for them")
    substitute_for: str | None = Field(description="that teacher's email")
    amount_cents: int | None = Field(description="the teacher's rate per lesson (null: no rate set)")


class PayrollUnmarked(BaseModel):
    kind: Literal["lesson", "makeup"] = Field(description="a weekly lesson without a mark, or a make-up booked for today")
    enrollment_id: int | None
    makeup_id: int | None
    status: str | None = Field(None, description="`booked` for a make-up of today")
    date: dt.date
    start: str
    timeslot_id: int
    student_id: int
    student: str
    substitute_for_id: int | None = Field(description="the slot's teacher, when this teacher stands in (a time off)")
    substitute_for: str | None = Field(description="that teacher's email")


class PayrollTeacher(BaseModel):
    teacher_id: int
    email: str
    name: str
    active: bool
    rate_cents: int | None = Field(description="pay per lesson in cents (null: not set, `studioctl teachers set-rate`)")
    lessons_paid: int
    amount_cents: int | None = Field(description="lessons_paid x rate_cents (null while no rate is set)")
    by_status: dict[str, int] = Field(description="the lessons paid by attendance mark (`makeup` for make-ups)")
    unmarked: list[PayrollUnmarked] = Field(description="lessons of the range up to today with no mark yet: not paid")
    lessons: list[PayrollLesson] = Field(description="every lesson paid, with its attendance (or make-up) id")


class PayrollReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.date = Field(alias="from")
    to: dt.date
    unmarked_until: dt.date | None = Field(description="unmarked lessons are looked for up to this day (today at most)")
    paid_statuses: list[str]
    total_cents: int = Field(description="the teachers' amounts added up (teachers without a rate count nothing)")
    teachers: list[PayrollTeacher]
