"""A family's calendar: every lesson of its live enrollments and every booked make-up.

Occurrences are derived (never stored): the slot's weekday dates within the enrollment's
range, minus closures, placed at the slot's wall-clock time in the studio's zone. On a date
its teacher is away with a substitute, the entry names the substitute. The transport (webapi)
renders the entries as iCalendar; this module knows no format. An entry's `location` is where
the slot's room is (`Room 2, Downtown, 12 Main St`), for the LOCATION line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from models.attendance import TAKEN_STATUSES, MakeUp
from models.clock import occurrence_start
from models.enrollment import HOLD_STATUSES, LIVE_STATUSES, OFFERED, PAUSED, Enrollment, lesson_dates
from models.locations import Location, Room
from models.people import Instrument, Student, Teacher
from models.scheduling import SLOT_MINUTES, SemesterClosure, Timeslot
from models.time_off import Covers, covers_between

# How far a subscribed calendar looks back and ahead (open-ended enrollments stop here).
PAST_DAYS = 28
FUTURE_DAYS = 182


@dataclass
class CalendarEntry:
    """One lesson or make-up on the family's calendar."""

    uid: str
    start: datetime
    end: datetime
    summary: str
    description: str
    tentative: bool = False
    location: str | None = None


def _where(room: Room | None, location: Location | None) -> str | None:
    """`Room 2, Downtown, 12 Main St` (None for a slot without a room)."""
    if room is None or location is None:
        return None
    return ", ".join(part for part in (room.name, location.name, location.address) if part)


def family_calendar(session: Session, payee_id: int, *, tz: ZoneInfo, today: date) -> list[CalendarEntry]:
    """Lessons (live enrollments; provisional ones tentative) and booked/used make-ups of the
    family from `today - PAST_DAYS` to `today + FUTURE_DAYS`, closures excluded, sorted by start."""
    first, last = today - timedelta(days=PAST_DAYS), today + timedelta(days=FUTURE_DAYS)
    closures = set(session.exec(select(SemesterClosure.closed_on)).all())
    covers = covers_between(session, first, last)
    entries: list[CalendarEntry] = []
    enrollments = session.exec(
        select(Enrollment, Student, Timeslot, Teacher, Instrument, Room, Location)
        .join(Student, Student.id == Enrollment.student_id)
        .join(Timeslot, Timeslot.id == Enrollment.timeslot_id)
        .join(Teacher, Teacher.id == Timeslot.teacher_id)
        .join(Instrument, Instrument.id == Enrollment.instrument_id)
        .outerjoin(Room, Room.id == Timeslot.room_id)
        .outerjoin(Location, Location.id == Room.location_id)
        .where(Student.payee_id == payee_id, Enrollment.status.in_(LIVE_STATUSES), Enrollment.status.not_in((PAUSED, OFFERED)))
    ).all()
    for enrollment, student, slot, teacher, instrument, room, location in enrollments:
        for day in lesson_dates(session, enrollment, first=first, last=last, closures=closures):
            start = occurrence_start(day, slot.start_minute, tz)
            entries.append(
                CalendarEntry(
                    uid=f"enrollment-{enrollment.id}-{day.isoformat()}",
                    start=start,
                    end=start + timedelta(minutes=SLOT_MINUTES),
                    summary=f"{student.name}: {instrument.name} with {_who(covers, teacher, day)}",
                    description=f"Weekly lesson (booking {enrollment.id}, {enrollment.status}).",
                    tentative=enrollment.status in HOLD_STATUSES,
                    location=_where(room, location),
                )
            )
    makeups = session.exec(
        select(MakeUp, Student, Timeslot, Teacher, Room, Location)
        .join(Student, Student.id == MakeUp.student_id)
        .join(Timeslot, Timeslot.id == MakeUp.timeslot_id)
        .join(Teacher, Teacher.id == Timeslot.teacher_id)
        .outerjoin(Room, Room.id == Timeslot.room_id)
        .outerjoin(Location, Location.id == Room.location_id)
        .where(
            Student.payee_id == payee_id,
            MakeUp.status.in_(TAKEN_STATUSES),
            MakeUp.lesson_date >= first,
            MakeUp.lesson_date <= last,
        )
    ).all()
    for credit, student, slot, teacher, room, location in makeups:
        if credit.lesson_date in closures:
            continue
        start = occurrence_start(credit.lesson_date, slot.start_minute, tz)
        entries.append(
            CalendarEntry(
                uid=f"makeup-{credit.id}-{credit.lesson_date.isoformat()}",
                start=start,
                end=start + timedelta(minutes=SLOT_MINUTES),
                summary=f"{student.name}: make-up lesson with {_who(covers, teacher, credit.lesson_date)}",
                description=f"Make-up lesson (credit {credit.id}).",
                location=_where(room, location),
            )
        )
    entries.sort(key=lambda entry: (entry.start, entry.uid))
    return entries


def _who(covers: Covers, teacher: Teacher, day: date) -> str:
    """The teacher of a lesson: the slot's, or the substitute while they are away."""
    substitute = covers.name(teacher.id, day)
    return f"{substitute} (substituting for {teacher.name})" if substitute else teacher.name
