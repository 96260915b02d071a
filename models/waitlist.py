"""The waiting list: a family's standing request for a slot (issue 14), and the offers made of it.

An entry names a student and an instrument, and optionally a teacher, weekdays and a time
window; it stays `open` until booked through an offer (`booked`) or removed (`removed`). At
most `MAX_OPEN_ENTRIES` open entries per student. An offer (`WaitlistOffer`) ties an entry to
a slot through a live enrollment of status `offered`, which holds the slot under the date-range
rule like any booking; the matching, acceptance, decline and lapse are `models.offers`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, func, select

from models.audit import record_audit, snapshot
from models.base import enum_check, utc_column, utcnow
from models.clock import format_minute
from models.errors import Conflict, Invalid, NotFound
from models.people import Instrument, Student, Teacher, get_student

OPEN, BOOKED, REMOVED = "open", "booked", "removed"
ENTRY_STATUSES = (OPEN, BOOKED, REMOVED)
OFFER_OPEN, OFFER_ACCEPTED, OFFER_DECLINED, OFFER_LAPSED = "open", "accepted", "declined", "lapsed"
OFFER_STATUSES = (OFFER_OPEN, OFFER_ACCEPTED, OFFER_DECLINED, OFFER_LAPSED)
MAX_OPEN_ENTRIES = 3
# The database's "one open offer per slot" and "one open offer per entry" (partial unique indexes).
OPEN_OFFER_SLOT_INDEX = "uq_waitlist_offer_open_slot"
OPEN_OFFER_ENTRY_INDEX = "uq_waitlist_offer_open_entry"


class TooManyEntries(Conflict):
    """A student already has the most open waiting-list entries."""

    type = "too-many-entries"


class OfferClosed(Conflict):
    """The offer was accepted, declined or lapsed already."""

    type = "offer-closed"


class WaitlistEntry(SQLModel, table=True):
    """A student waiting for a slot of an instrument (teacher, weekdays, time window optional)."""

    __tablename__ = "waitlist_entry"
    __table_args__ = (
        enum_check("status", ENTRY_STATUSES, "status_known"),
        sa.CheckConstraint("earliest_minute IS NULL OR earliest_minute BETWEEN 0 AND 1439", name="earliest_range"),
        sa.CheckConstraint("latest_minute IS NULL OR latest_minute BETWEEN 0 AND 1439", name="latest_range"),
    )

    id: int | None = Field(default=None, primary_key=True)
    student_id: int = Field(foreign_key="student.id", index=True, ondelete="CASCADE")
    instrument_id: int = Field(foreign_key="instrument.id", index=True, ondelete="RESTRICT")
    teacher_id: int | None = Field(default=None, foreign_key="teacher.id", ondelete="CASCADE")
    # Comma-separated weekdays (0 = Monday), or NULL for any.
    weekdays: str | None = Field(default=None, max_length=20)
    earliest_minute: int | None = None
    latest_minute: int | None = None
    status: str = Field(default=OPEN, max_length=16, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))

    @property
    def weekday_list(self) -> list[int] | None:
        return None if self.weekdays is None else [int(day) for day in self.weekdays.split(",") if day]

    def fits(self, *, teacher_id: int, weekday: int, start_minute: int) -> bool:
        """Whether a slot of `teacher_id` on `weekday` at `start_minute` fits this entry's filters."""
        days = self.weekday_list
        return (
            (self.teacher_id is None or self.teacher_id == teacher_id)
            and (days is None or weekday in days)
            and (self.earliest_minute is None or start_minute >= self.earliest_minute)
            and (self.latest_minute is None or start_minute <= self.latest_minute)
        )


class WaitlistOffer(SQLModel, table=True):
    """A slot offered to an entry until `expires_at`: `enrollment_id` is the `offered` hold,
    `booking_id` the provisional booking an acceptance made."""

    __tablename__ = "waitlist_offer"
    __table_args__ = (
        enum_check("status", OFFER_STATUSES, "status_known"),
        sa.Index(
            OPEN_OFFER_SLOT_INDEX,
            "timeslot_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
        sa.Index(
            OPEN_OFFER_ENTRY_INDEX,
            "entry_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="waitlist_entry.id", index=True, ondelete="CASCADE")
    timeslot_id: int = Field(foreign_key="timeslot.id", index=True, ondelete="RESTRICT")
    student_id: int = Field(foreign_key="student.id", index=True, ondelete="CASCADE")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", ondelete="SET NULL")
    booking_id: int | None = Field(default=None, foreign_key="enrollment.id", ondelete="SET NULL")
    status: str = Field(default=OFFER_OPEN, max_length=16, index=True)
    expires_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


def _minute(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        hours, minutes = value.split(":")
        minute = int(hours) * 60 + int(minutes)
    except ValueError:
        raise Invalid(f"{field} must be HH:MM", field=field) from None
    if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        raise Invalid(f"{field} must be HH:MM", field=field)
    return minute


def add_entry(
    session: Session,
    *,
    student_id: int,
    instrument: str,
    teacher_id: int | None = None,
    weekdays: list[int] | None = None,
    earliest: str | None = None,
    latest: str | None = None,
    payee_id: int | None = None,
    actor: str,
) -> WaitlistEntry:
    """Put a student on the waiting list. With `payee_id`, only that family's student (others NotFound)."""
    student = get_student(session, student_id, payee_id=payee_id)
    if student.archived_at is not None:
        raise NotFound(f"no student {student_id}", field="student_id")
    instrument_row = session.exec(select(Instrument).where(col(Instrument.name) == instrument.strip().lower())).first()
    if instrument_row is None:
        raise NotFound(f"no instrument named {instrument!r}", field="instrument")
    if teacher_id is not None and session.get(Teacher, teacher_id) is None:
        raise NotFound(f"no teacher {teacher_id}", field="teacher_id")
    if weekdays is not None and any(not 0 <= day <= 6 for day in weekdays):
        raise Invalid("weekdays are 0 (Monday) to 6 (Sunday)", field="weekdays")
    earliest_minute, latest_minute = _minute(earliest, "earliest"), _minute(latest, "latest")
    if earliest_minute is not None and latest_minute is not None and earliest_minute > latest_minute:
        raise Invalid("latest is before earliest", field="latest")
    # The student's row lock serialises a student's entries (the cap).
    session.execute(sa.select(col(Student.id)).where(col(Student.id) == student.id).with_for_update())
    open_count = session.exec(
        select(func.count())
        .select_from(WaitlistEntry)
        .where(col(WaitlistEntry.student_id) == student.id, col(WaitlistEntry.status) == OPEN)
    ).one()
    if open_count >= MAX_OPEN_ENTRIES:
        raise TooManyEntries(
            f"{student.name} already has {open_count} open waiting-list entries (the limit is {MAX_OPEN_ENTRIES})"
        )
    now = utcnow()
    entry = WaitlistEntry(
        student_id=student.id,
        instrument_id=instrument_row.id,
        teacher_id=teacher_id,
        weekdays=None if weekdays is None else ",".join(str(day) for day in sorted(set(weekdays))),
        earliest_minute=earliest_minute,
        latest_minute=latest_minute,
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    session.flush()
    record_audit(session, actor=actor, action="waitlist.add", entity=entry, after=snapshot(entry))
    return entry


def get_entry(session: Session, entry_id: int, *, payee_id: int | None = None) -> WaitlistEntry:
    """An entry by id; with `payee_id`, only that family's (others NotFound)."""
    entry = session.get(WaitlistEntry, entry_id)
    if entry is not None and payee_id is not None:
        student = session.get(Student, entry.student_id)
        if student is None or student.payee_id != payee_id:
            entry = None
    if entry is None or entry.status == REMOVED:
        raise NotFound(f"no waiting-list entry {entry_id}", field="entry_id")
    return entry


def list_entries(
    session: Session, *, payee_id: int | None = None, instrument: str | None = None, status: str | None = OPEN
) -> list[WaitlistEntry]:
    """Entries oldest first (the order offers follow); a family's, or all (the admin)."""
    statement = select(WaitlistEntry).join(Student, col(Student.id) == col(WaitlistEntry.student_id))
    if payee_id is not None:
        statement = statement.where(col(Student.payee_id) == payee_id, col(WaitlistEntry.status) != REMOVED)
    if status is not None:
        statement = statement.where(col(WaitlistEntry.status) == status)
    if instrument is not None:
        statement = statement.join(Instrument, col(Instrument.id) == col(WaitlistEntry.instrument_id)).where(
            col(Instrument.name) == instrument.strip().lower()
        )
    return list(session.exec(statement.order_by(col(WaitlistEntry.created_at), col(WaitlistEntry.id))).all())


def remove_entry(session: Session, entry: WaitlistEntry, *, actor: str) -> WaitlistEntry:
    """Take an entry off the list (an open offer made of it stays until answered or lapsed)."""
    if entry.status != OPEN:
        raise Conflict(f"waiting-list entry {entry.id} is {entry.status}")
    before = snapshot(entry)
    entry.status = REMOVED
    entry.updated_at = utcnow()
    session.add(entry)
    session.flush()
    record_audit(session, actor=actor, action="waitlist.remove", entity=entry, before=before, after=snapshot(entry))
    return entry


def entry_view(session: Session, entry: WaitlistEntry) -> dict:
    """What the API and the CLI show of an entry."""
    instrument = session.get(Instrument, entry.instrument_id)
    return {
        "id": entry.id,
        "student_id": entry.student_id,
        "instrument": instrument.name if instrument else None,
        "teacher_id": entry.teacher_id,
        "weekdays": entry.weekday_list,
        "earliest": None if entry.earliest_minute is None else format_minute(entry.earliest_minute),
        "latest": None if entry.latest_minute is None else format_minute(entry.latest_minute),
        "status": entry.status,
        "created_at": entry.created_at,
    }
