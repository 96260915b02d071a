"""A family's own lists (students, bookings, make-up credits), one page at a time.

Each list is scoped to the payee in SQL (another family's rows are never read) and
keyset-paginated: students oldest first (`after_id`), bookings and make-ups newest first
(`before_id`). Each page is one query; `limit` + 1 rows are read so the caller can tell
whether another page follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, select

from models.attendance import MakeUp
from models.db import is_postgres
from models.enrollment import Enrollment
from models.people import Instrument, Payee, Student, Teacher


def students_page(session: Session, payee_id: int, *, after_id: int | None = None, limit: int = 50) -> list[Student]:
    """The family's current (not archived) students by id."""
    statement = (
        select(Student).where(Student.payee_id == payee_id, Student.archived_at.is_(None)).order_by(Student.id).limit(limit + 1)
    )
    if after_id is not None:
        statement = statement.where(Student.id > after_id)
    return list(session.exec(statement).all())


def bookings_page(
    session: Session, payee_id: int, *, before_id: int | None = None, limit: int = 50
) -> list[tuple[Enrollment, str]]:
    """The family's enrollments, newest first, each with its instrument's name."""
    statement = (
        select(Enrollment, Instrument.name)
        .join(Student, Student.id == Enrollment.student_id)
        .join(Instrument, Instrument.id == Enrollment.instrument_id)
        .where(Student.payee_id == payee_id)
        .order_by(Enrollment.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        statement = statement.where(Enrollment.id < before_id)
    return [(enrollment, name) for enrollment, name in session.exec(statement).all()]


def makeups_page(
    session: Session, payee_id: int, *, before_id: int | None = None, limit: int = 50
) -> list[tuple[MakeUp, str | None]]:
    """The family's make-up credits, newest first, each with its instrument's name (if any)."""
    statement = (
        select(MakeUp, Instrument.name)
        .join(Student, Student.id == MakeUp.student_id)
        .outerjoin(Instrument, Instrument.id == MakeUp.instrument_id)
        .where(Student.payee_id == payee_id)
        .order_by(MakeUp.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        statement = statement.where(MakeUp.id < before_id)
    return [(credit, name) for credit, name in session.exec(statement).all()]


def moved_to(session: Session, payee_id: int, enrollment_ids: list[int]) -> dict[int, int]:
    """Enrollment id → the family's enrollment that continues it after a move (one query)."""
    if not enrollment_ids:
        return {}
    statement = (
        select(Enrollment.moved_from_id, Enrollment.id)
        .join(Student, Student.id == Enrollment.student_id)
        .where(Student.payee_id == payee_id, Enrollment.moved_from_id.in_(enrollment_ids))
    )
    return {moved_from: moved for moved_from, moved in session.exec(statement).all()}


def instrument_name(session: Session, instrument_id: int | None) -> str | None:
    """The name of an instrument id (None for None)."""
    if instrument_id is None:
        return None
    instrument = session.get(Instrument, instrument_id)
    return instrument.name if instrument else None


def payee_for_user(session: Session, supabase_user_id: str, *, lock: bool = False) -> Payee | None:
    """The payee linked to a sign-in, if they registered.

    `lock=True` reads it afresh and locks the row until the unit of work ends, in the same
    statement (`lock_row`'s guarantee without a second round trip): a booking serialises
    one family's holds on it.
    """
    if lock:
        statement = _PAYEE_BY_SUB_LOCKED if is_postgres(session) else _PAYEE_BY_SUB_FRESH
    else:
        statement = _PAYEE_BY_SUB
    return session.execute(statement, {"sub": supabase_user_id}).scalars().first()


@dataclass(frozen=True)
class PayeeRef:
    """What a booking needs of the family: its id and whether a card is on file."""

    id: int
    stripe_payment_method_id: str | None


def payee_ref_for_user(session: Session, supabase_user_id: str, *, lock: bool = False) -> PayeeRef | None:
    """`payee_for_user` for the booking door: two columns, no ORM object (one read per booking).

    `lock=True` locks the row until the unit of work ends (PostgreSQL; SQLite's write unit of
    work began IMMEDIATE), in the same statement."""
    statement = _PAYEE_REF_LOCKED if lock and is_postgres(session) else _PAYEE_REF
    row = session.execute(statement, {"sub": supabase_user_id}).first()
    return PayeeRef(*row) if row is not None else None


# Built once: every parent request reads its payee by sign-in subject.
_PAYEE_BY_SUB = select(Payee).where(Payee.supabase_user_id == sa.bindparam("sub", type_=sa.String))
_PAYEE_BY_SUB_FRESH = _PAYEE_BY_SUB.execution_options(populate_existing=True)
_PAYEE_BY_SUB_LOCKED = _PAYEE_BY_SUB_FRESH.with_for_update()
_PAYEE_REF = sa.select(Payee.__table__.c.id, Payee.__table__.c.stripe_payment_method_id).where(
    Payee.__table__.c.supabase_user_id == sa.bindparam("sub", type_=sa.String)
)
_PAYEE_REF_LOCKED = _PAYEE_REF.with_for_update()


def payee_for_calendar_token(session: Session, token: str) -> Payee | None:
    """The payee whose calendar subscription token is `token`."""
    return session.exec(select(Payee).where(Payee.calendar_token == token)).first()


def teacher_names(session: Session, teacher_ids: set[int]) -> dict[int, str]:
    """Teacher id → name for a set of ids (one query)."""
    if not teacher_ids:
        return {}
    return dict(session.exec(select(Teacher.id, Teacher.name).where(Teacher.id.in_(sorted(teacher_ids)))).all())
