"""Factory helpers: believable rows with as little ceremony as a test needs."""

from __future__ import annotations

import itertools
from datetime import date

from sqlmodel import Session

from models.billing import Plan
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Semester, SemesterClosure, Timeslot

_counter = itertools.count(1)


def instrument(session: Session, name: str = "piano") -> Instrument:
    found = session.query(Instrument).filter_by(name=name).first()
    if found:
        return found
    row = Instrument(name=name)
    session.add(row)
    session.flush()
    return row


def teacher(session: Session, *, name: str | None = None, instruments=("piano",), active: bool = True) -> Teacher:
    n = next(_counter)
    row = Teacher(name=name or f"Teacher {n}", email=f"teacher{n}@studio.test", active=active)
    session.add(row)
    session.flush()
    for item in instruments:
        session.add(TeacherInstrument(teacher_id=row.id, instrument_id=instrument(session, item).id))
    session.flush()
    return row


def timeslot(
    session: Session, *, teacher_row: Teacher | None = None, weekday: int = 0, start: str = "16:00", active: bool = True
) -> Timeslot:
    teacher_row = teacher_row or teacher(session)
    hours, minutes = map(int, start.split(":"))
    row = Timeslot(teacher_id=teacher_row.id, weekday=weekday, start_minute=hours * 60 + minutes, active=active)
    session.add(row)
    session.flush()
    return row


def payee(session: Session, *, email: str | None = None, supabase_user_id: str | None = None, name: str | None = None) -> Payee:
    n = next(_counter)
    row = Payee(name=name or f"Parent {n}", email=email or f"parent{n}@family.test", supabase_user_id=supabase_user_id)
    session.add(row)
    session.flush()
    return row


def student(session: Session, *, payee_row: Payee | None = None, name: str | None = None) -> Student:
    payee_row = payee_row or payee(session)
    row = Student(payee_id=payee_row.id, name=name or f"Student {next(_counter)}")
    session.add(row)
    session.flush()
    return row


def plan(session: Session, *, frequency: str = "monthly", amount_cents: int = 12000, price_id: str | None = None) -> Plan:
    row = Plan(name=f"{frequency} plan", frequency=frequency, amount_cents=amount_cents, currency="usd", stripe_price_id=price_id)
    session.add(row)
    session.flush()
    return row


def semester(
    session: Session, *, starts: date, ends: date, closures=(), makeup_ends: date | None = None, name: str | None = None
) -> Semester:
    row = Semester(
        name=name or f"Semester {next(_counter)}",
        starts_on=starts,
        ends_on=ends,
        makeup_starts_on=starts,
        makeup_ends_on=makeup_ends or ends,
    )
    session.add(row)
    session.flush()
    for day in closures:
        session.add(SemesterClosure(semester_id=row.id, closed_on=day))
    session.flush()
    return row
