"""Lightweight SQLAlchemy Core handles on a few tables, for hot read paths.

`sa.table()` / `sa.column()` name only the columns a read model selects. Building them
costs microseconds, where importing the SQLModel table classes (pydantic models, mappers,
the PostgreSQL dialect for the partial index) costs ~150 ms of CPU: `studioctl dashboard
today` pays that on every run. Rows come back as plain tuples, never ORM objects.

The names must match the real schema (`models.tables`); `tests/test_dashboard_queries.py`
checks every column here against `SQLModel.metadata`.
"""

from __future__ import annotations

import sqlalchemy as sa

_int, _str, _date = sa.Integer, sa.String, sa.Date

enrollment = sa.table(
    "enrollment",
    sa.column("id", _int),
    sa.column("student_id", _int),
    sa.column("timeslot_id", _int),
    sa.column("instrument_id", _int),
    sa.column("semester_id", _int),
    sa.column("status", _str),
    sa.column("start_date", _date),
    sa.column("end_date", _date),
)
timeslot = sa.table(
    "timeslot",
    sa.column("id", _int),
    sa.column("teacher_id", _int),
    sa.column("weekday", _int),
    sa.column("start_minute", _int),
    sa.column("room_id", _int),
)
room = sa.table("room", sa.column("id", _int), sa.column("location_id", _int), sa.column("name", _str))
location = sa.table("location", sa.column("id", _int), sa.column("name", _str))
teacher = sa.table("teacher", sa.column("id", _int), sa.column("name", _str))
student = sa.table("student", sa.column("id", _int), sa.column("name", _str))
instrument = sa.table("instrument", sa.column("id", _int), sa.column("name", _str))
semester = sa.table("semester", sa.column("id", _int), sa.column("ends_on", _date))
semester_closure = sa.table("semester_closure", sa.column("semester_id", _int), sa.column("closed_on", _date))
attendance = sa.table("attendance", sa.column("enrollment_id", _int), sa.column("lesson_date", _date), sa.column("status", _str))
makeup = sa.table(
    "makeup",
    sa.column("id", _int),
    sa.column("student_id", _int),
    sa.column("timeslot_id", _int),
    sa.column("instrument_id", _int),
    sa.column("lesson_date", _date),
    sa.column("status", _str),
)
time_off = sa.table(
    "time_off",
    sa.column("teacher_id", _int),
    sa.column("starts_on", _date),
    sa.column("ends_on", _date),
    sa.column("substitute_id", _int),
)

TABLES = (
    enrollment,
    timeslot,
    room,
    location,
    teacher,
    student,
    instrument,
    semester,
    semester_closure,
    attendance,
    makeup,
    time_off,
)
