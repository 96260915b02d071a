"""The roster out, in the shape `models.roster` imports: a studio leaves as easily as it came."""

from __future__ import annotations

import csv
from typing import IO

import sqlalchemy as sa
from sqlmodel import Session, col

from models.clock import WEEKDAYS, format_minute
from models.enrollment import LIVE_STATUSES, OFFERED, Enrollment
from models.people import Instrument, Payee, Student, Teacher
from models.reports import csv_cell
from models.roster import COLUMNS
from models.scheduling import Timeslot


def export_roster(session: Session, file: IO[str]) -> int:
    """Write the roster in import's shape: a row per live enrollment, one per non-archived student
    without one and one per family without students, by family, student and slot. Cells are safe
    to open in a spreadsheet (`csv_cell`; import takes the guard off). Returns the rows written."""
    live = sa.and_(
        col(Enrollment.student_id) == col(Student.id),
        col(Enrollment.status).in_(LIVE_STATUSES),
        col(Enrollment.status) != OFFERED,  # a waiting-list offer is not on the roster yet
    )
    statement = (
        sa.select(
            col(Payee.email),
            col(Payee.name),
            col(Payee.phone),
            col(Student.name),
            col(Student.birth_date),
            col(Instrument.name),
            col(Teacher.email),
            col(Timeslot.weekday),
            col(Timeslot.start_minute),
            col(Enrollment.offline),
            col(Enrollment.plan_id),
            col(Enrollment.start_date),
        )
        .select_from(Payee)
        .outerjoin(Student, sa.and_(col(Student.payee_id) == col(Payee.id), col(Student.archived_at).is_(None)))
        .outerjoin(Enrollment, live)
        .outerjoin(Timeslot, col(Timeslot.id) == col(Enrollment.timeslot_id))
        .outerjoin(Teacher, col(Teacher.id) == col(Timeslot.teacher_id))
        .outerjoin(Instrument, col(Instrument.id) == col(Enrollment.instrument_id))
        .order_by(
            col(Payee.email),
            col(Student.name),
            col(Student.id),
            col(Teacher.email),
            col(Timeslot.weekday),
            col(Timeslot.start_minute),
        )
    )
    writer = csv.writer(file)
    writer.writerow(COLUMNS)
    written = 0
    for email, family, phone, student, birth, instrument, teacher, weekday, minute, offline, plan_id, start in session.execute(
        statement.execution_options(yield_per=500)
    ):
        slotted = teacher is not None
        values = [
            email,
            family,
            phone,
            student,
            birth.isoformat() if birth else None,
            instrument,
            teacher,
            WEEKDAYS[weekday] if slotted else None,
            format_minute(minute) if slotted else None,
            str(plan_id) if slotted and not offline and plan_id is not None else None,
            start.isoformat() if slotted else None,
        ]
        writer.writerow([csv_cell(value) for value in values])
        written += 1
    return written
