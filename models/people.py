"""People and what they play: instruments, teachers, payees (parents) and students."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import record_audit, snapshot
from models.base import MAX_ID, utc_column, utcnow
from models.clock import studio_today
from models.db import lock_row
from models.errors import Conflict, Invalid, NotFound, TooManyStudents

SEED_INSTRUMENTS = ("piano", "guitar", "drums", "bass")


class Instrument(SQLModel, table=True):
    """An instrument taught at the studio; the name is stored lower-case and unique."""

    __table_args__ = (sa.CheckConstraint("name = lower(name) AND length(name) > 0", name="name_lower"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=60, sa_column_kwargs={"unique": True})


class TeacherInstrument(SQLModel, table=True):
    """Which teacher teaches which instrument."""

    __tablename__ = "teacher_instrument"

    teacher_id: int = Field(foreign_key="teacher.id", primary_key=True, ondelete="CASCADE")
    instrument_id: int = Field(foreign_key="instrument.id", primary_key=True, ondelete="RESTRICT")


class Teacher(SQLModel, table=True):
    """A teacher; deactivated teachers keep their history but take no new bookings."""

    __table_args__ = (sa.CheckConstraint("rate_cents IS NULL OR rate_cents >= 0", name="rate_not_negative"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True})
    active: bool = Field(default=True)
    bio: str | None = Field(default=None, max_length=2000)
    # Pay per lesson taught, in cents (issue 15, payroll); empty = no rate set yet.
    rate_cents: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class Payee(SQLModel, table=True):
    """The paying parent. `supabase_user_id` links the parent's sign-in (`models.access`); admins may add payees without one."""

    id: int | None = Field(default=None, primary_key=True)
    supabase_user_id: str | None = Field(default=None, max_length=255, sa_column_kwargs={"unique": True})
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True})
    name: str = Field(max_length=120)
    phone: str | None = Field(default=None, max_length=40)  # E.164 when set through models.sms.normalize_phone
    # Lesson reminders, per channel (issue 14): email on, SMS off until the family opts in.
    remind_by_email: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    remind_by_sms: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    stripe_customer_id: str | None = Field(default=None, max_length=64, sa_column_kwargs={"unique": True})
    # The card Stripe bills by default, as last seen (Stripe stays the source of truth).
    stripe_payment_method_id: str | None = Field(default=None, max_length=64)
    # Bumped when the Stripe customer was deleted: the next one is created under a new
    # idempotency key (Stripe would replay the deleted customer for the old key).
    stripe_customer_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    calendar_token: str = Field(
        default_factory=lambda: secrets.token_urlsafe(24), max_length=64, sa_column_kwargs={"unique": True}
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class HoldingFamily(Protocol):
    """What the booking door reads of the family holding a slot (a Payee row, or the API's
    two-column `models.family.PayeeRef`)."""

    @property
    def id(self) -> int | None: ...

    @property
    def stripe_payment_method_id(self) -> str | None: ...


class Student(SQLModel, table=True):
    """A child who takes lessons; archived students keep their history."""

    id: int | None = Field(default=None, primary_key=True)
    payee_id: int = Field(foreign_key="payee.id", index=True, ondelete="RESTRICT")
    name: str = Field(max_length=120)
    birth_date: date | None = None
    notes: str | None = Field(default=None, max_length=2000)
    archived_at: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


# Operations ----------------------------------------------------------------------------


def normalise_email(email: str) -> str:
    """Trim and lower-case an email address; refuse what clearly is not one."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        raise Invalid(f"{email!r} is not an email address", field="email")
    return email


def get_instrument(session: Session, name: str) -> Instrument:
    """The instrument called `name` (case-insensitive), or NotFound."""
    instrument = session.exec(select(Instrument).where(Instrument.name == name.strip().lower())).first()
    if instrument is None:
        raise NotFound(f"no instrument named {name!r}", field="instrument")
    return instrument


def add_instrument(session: Session, *, name: str, actor: str) -> Instrument:
    """Add an instrument; Conflict when it exists already."""
    name = name.strip().lower()
    if not name:
        raise Invalid("instrument name is empty", field="name")
    if session.exec(select(Instrument).where(Instrument.name == name)).first():
        raise Conflict(f"instrument {name!r} exists already")
    instrument = Instrument(name=name)
    session.add(instrument)
    session.flush()
    record_audit(session, actor=actor, action="instrument.add", entity=instrument, after=snapshot(instrument))
    return instrument


def seed_instruments(session: Session, *, actor: str) -> list[Instrument]:
    """Make sure the standard instruments exist (idempotent); return the ones created."""
    existing = set(session.exec(select(Instrument.name)).all())
    created = []
    for name in SEED_INSTRUMENTS:
        if name not in existing:
            created.append(add_instrument(session, name=name, actor=actor))
    return created


def get_teacher(session: Session, ref: str | int) -> Teacher:
    """A teacher by id or email, or NotFound."""
    teacher = _by_id_or_email(session, Teacher, ref)
    if teacher is None:
        raise NotFound(f"no teacher {ref!r}", field="teacher")
    return teacher


def get_payee(session: Session, ref: str | int) -> Payee:
    """A payee by id or email, or NotFound."""
    payee = _by_id_or_email(session, Payee, ref)
    if payee is None:
        raise NotFound(f"no payee {ref!r}", field="payee")
    return payee


def get_student(session: Session, student_id: int, *, payee_id: int | None = None) -> Student:
    """A student by id, optionally only among `payee_id`'s (others are NotFound, never Forbidden)."""
    student = session.get(Student, student_id)
    if student is None or student.archived_at is not None or (payee_id is not None and student.payee_id != payee_id):
        raise NotFound(f"no student {student_id}", field="student_id")
    return student


def _by_id_or_email(session: Session, model, ref: str | int):
    text = str(ref).strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is true too, but int() refuses it
        row_id = int(text)
        return session.get(model, row_id) if 0 < row_id <= MAX_ID else None
    return session.exec(select(model).where(model.email == text.lower())).first()


def teacher_instruments(session: Session, teacher_id: int) -> list[str]:
    """Names of the instruments `teacher_id` teaches, sorted."""
    rows = session.exec(
        select(Instrument.name)
        .join(TeacherInstrument, TeacherInstrument.instrument_id == Instrument.id)
        .where(TeacherInstrument.teacher_id == teacher_id)
        .order_by(Instrument.name)
    ).all()
    return list(rows)


def add_teacher(
    session: Session, *, name: str, email: str, instruments: list[str] = (), bio: str | None = None, actor: str
) -> Teacher:
    """Add a teacher teaching `instruments`; Conflict on a duplicate email."""
    email = normalise_email(email)
    if not name.strip():
        raise Invalid("teacher name is empty", field="name")
    if session.exec(select(Teacher).where(Teacher.email == email)).first():
        raise Conflict(f"a teacher with email {email} exists already")
    resolved = [get_instrument(session, item) for item in instruments]
    teacher = Teacher(name=name.strip(), email=email, bio=bio)
    session.add(teacher)
    session.flush()
    for instrument in resolved:
        session.add(TeacherInstrument(teacher_id=teacher.id, instrument_id=instrument.id))
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="teacher.add",
        entity=teacher,
        after={**snapshot(teacher), "instruments": [i.name for i in resolved]},
    )
    return teacher


def update_teacher(
    session: Session,
    teacher: Teacher,
    *,
    name: str | None = None,
    email: str | None = None,
    bio: str | None = None,
    active: bool | None = None,
    instruments: list[str] | None = None,
    actor: str,
) -> Teacher:
    """Change a teacher's fields; `instruments`, when given, replaces the list."""
    before = {**snapshot(teacher), "instruments": teacher_instruments(session, teacher.id)}
    if email is not None:
        email = normalise_email(email)
        clash = session.exec(select(Teacher).where(Teacher.email == email, Teacher.id != teacher.id)).first()
        if clash:
            raise Conflict(f"a teacher with email {email} exists already")
        teacher.email = email
    if name is not None:
        if not name.strip():
            raise Invalid("teacher name is empty", field="name")
        teacher.name = name.strip()
    if bio is not None:
        teacher.bio = bio
    if active is not None:
        teacher.active = active
    if instruments is not None:
        resolved = [get_instrument(session, item) for item in instruments]
        for link in session.exec(select(TeacherInstrument).where(TeacherInstrument.teacher_id == teacher.id)).all():
            session.delete(link)
        session.flush()
        for instrument in resolved:
            session.add(TeacherInstrument(teacher_id=teacher.id, instrument_id=instrument.id))
    session.add(teacher)
    session.flush()
    after = {**snapshot(teacher), "instruments": teacher_instruments(session, teacher.id)}
    record_audit(session, actor=actor, action="teacher.update", entity=teacher, before=before, after=after)
    return teacher


def _text(value: str, what: str, limit: int, field: str) -> str:
    """`value` stripped; Invalid when longer than its column or holding a control character
    (PostgreSQL refuses both, SQLite would store them: `import roster` names the line instead)."""
    text = value.strip()
    if len(text) > limit:
        raise Invalid(f"{what} is longer than {limit} characters", field=field)
    if any(char < " " or char == "\x7f" for char in text):
        raise Invalid(f"{what} cannot hold control characters: {text!r}", field=field)
    return text


def add_payee(
    session: Session, *, name: str, email: str, phone: str | None = None, supabase_user_id: str | None = None, actor: str
) -> Payee:
    """Add a payee; Conflict on a duplicate email or Supabase user."""
    email = normalise_email(email)
    if not name.strip():
        raise Invalid("payee name is empty", field="name")
    name, phone = _text(name, "payee name", 120, "name"), _text(phone, "phone", 40, "phone") if phone else phone
    if session.exec(select(Payee).where(Payee.email == email)).first():
        raise Conflict(f"a payee with email {email} exists already")
    if supabase_user_id and session.exec(select(Payee).where(Payee.supabase_user_id == supabase_user_id)).first():
        raise Conflict("that sign-in is linked to another payee already")
    payee = Payee(name=name.strip(), email=email, phone=phone, supabase_user_id=supabase_user_id)
    session.add(payee)
    session.flush()
    record_audit(session, actor=actor, action="payee.add", entity=payee, after=snapshot(payee))
    return payee


def update_payee(
    session: Session, payee: Payee, *, name: str | None = None, email: str | None = None, phone: str | None = None, actor: str
) -> Payee:
    """Change a payee's contact fields."""
    before = snapshot(payee)
    if email is not None:
        email = normalise_email(email)
        if session.exec(select(Payee).where(Payee.email == email, Payee.id != payee.id)).first():
            raise Conflict(f"a payee with email {email} exists already")
        payee.email = email
    if name is not None:
        if not name.strip():
            raise Invalid("payee name is empty", field="name")
        payee.name = name.strip()
    if phone is not None:
        payee.phone = phone or None
    payee.updated_at = utcnow()
    session.add(payee)
    session.flush()
    record_audit(session, actor=actor, action="payee.update", entity=payee, before=before, after=snapshot(payee))
    return payee


def add_student(
    session: Session,
    *,
    payee: Payee,
    name: str,
    birth_date: date | None = None,
    notes: str | None = None,
    actor: str,
    max_students: int | None = None,
) -> Student:
    """Add a student to a payee's family; `max_students`: TooManyStudents when the family has that
    many non-archived ones (counted under the payee's row lock, so concurrent adds cannot pass it)."""
    if not name.strip():
        raise Invalid("student name is empty", field="name")
    name = _text(name, "student name", 120, "name")
    if birth_date is not None and birth_date > studio_today():
        raise Invalid("birth date is in the future", field="birth_date")
    if max_students is not None:
        lock_row(session, Payee, payee.id)
        count = sa.select(sa.func.count()).where(Student.payee_id == payee.id, Student.archived_at.is_(None))
        if session.scalar(count) >= max_students:
            raise TooManyStudents(f"your family has {max_students} students already (the limit)")
    student = Student(payee_id=payee.id, name=name.strip(), birth_date=birth_date, notes=notes)
    session.add(student)
    session.flush()
    record_audit(session, actor=actor, action="student.add", entity=student, after=snapshot(student))
    return student


_UNSET = object()


def update_student(
    session: Session, student: Student, *, name: str | None = None, birth_date=_UNSET, notes=_UNSET, actor: str
) -> Student:
    """Change a student's name, birth date or notes (None clears the optional ones)."""
    before = snapshot(student)
    if name is not None:
        if not name.strip():
            raise Invalid("student name is empty", field="name")
        student.name = name.strip()
    if birth_date is not _UNSET:
        if birth_date is not None and birth_date > studio_today():
            raise Invalid("birth date is in the future", field="birth_date")
        student.birth_date = birth_date
    if notes is not _UNSET:
        student.notes = notes
    session.add(student)
    session.flush()
    record_audit(session, actor=actor, action="student.update", entity=student, before=before, after=snapshot(student))
    return student


def remove_instrument(session: Session, *, name: str, actor: str) -> None:
    """Remove an instrument nobody teaches and no enrollment or make-up uses; Conflict otherwise.

    Enrollments and make-ups reference their instrument ON DELETE RESTRICT: the database
    itself refuses the delete of one with history (this module knows neither table).
    """
    instrument = get_instrument(session, name)
    teachers = session.exec(select(TeacherInstrument).where(TeacherInstrument.instrument_id == instrument.id)).all()
    if teachers:
        raise Conflict(f"{len(teachers)} teacher(s) teach {instrument.name}; update them first")
    before = snapshot(instrument)
    try:
        with session.begin_nested():
            session.delete(instrument)
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(f"{instrument.name} has enrollment or make-up history and cannot be removed") from None
    record_audit(session, actor=actor, action="instrument.remove", entity=instrument, before=before)
