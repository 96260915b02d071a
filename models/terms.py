"""Terms: adding a semester and closing (or reopening) a day of it.

A day on which attendance was marked or a make-up is booked cannot become a closure silently:
the rule reads `models.attendance`, so these operations live above it (the tables and what is
read of them stay in `models.scheduling`).
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from models.attendance import TAKEN_STATUSES, Attendance, MakeUp
from models.audit import record_audit, snapshot
from models.errors import Conflict, Invalid, NotFound
from models.scheduling import Semester, SemesterClosure


def add_semester(
    session: Session,
    *,
    name: str,
    starts_on: date,
    ends_on: date,
    makeup_starts_on: date | None = None,
    makeup_ends_on: date | None = None,
    closures: list[date] = (),
    actor: str,
) -> Semester:
    """Add a semester; the make-up window defaults to the semester itself."""
    if not name.strip():
        raise Invalid("a semester needs a name, e.g. 'Fall 2026'", field="name")
    if ends_on < starts_on:
        raise Invalid("the semester ends before it starts", field="ends")
    makeup_starts_on = makeup_starts_on or starts_on
    makeup_ends_on = makeup_ends_on or ends_on
    if makeup_ends_on < makeup_starts_on:
        raise Invalid("the make-up window ends before it starts", field="makeup_ends")
    if session.exec(select(Semester).where(Semester.name == name.strip())).first():
        raise Conflict(f"a semester named {name!r} exists already")
    overlap = session.exec(select(Semester).where(Semester.starts_on <= ends_on, Semester.ends_on >= starts_on)).first()
    if overlap:
        raise Conflict(f"dates overlap semester {overlap.name!r} ({overlap.starts_on}–{overlap.ends_on})")
    semester = Semester(
        name=name.strip(), starts_on=starts_on, ends_on=ends_on, makeup_starts_on=makeup_starts_on, makeup_ends_on=makeup_ends_on
    )
    session.add(semester)
    session.flush()
    record_audit(session, actor=actor, action="semester.add", entity=semester, after=snapshot(semester))
    for day in sorted(set(closures)):
        add_closure(session, semester=semester, closed_on=day, actor=actor)
    return semester


def add_closure(
    session: Session, *, semester: Semester, closed_on: date, reason: str | None = None, actor: str
) -> SemesterClosure:
    """Close the studio on a date of the semester."""
    if not semester.starts_on <= closed_on <= semester.ends_on:
        raise Invalid(f"{closed_on} is outside {semester.name} ({semester.starts_on}–{semester.ends_on})", field="date")
    if session.exec(
        select(SemesterClosure).where(SemesterClosure.semester_id == semester.id, SemesterClosure.closed_on == closed_on)
    ).first():
        raise Conflict(f"{closed_on} is already a closure of {semester.name}")
    _refuse_closure_over_history(session, closed_on)
    closure = SemesterClosure(semester_id=semester.id, closed_on=closed_on, reason=reason)
    session.add(closure)
    session.flush()
    record_audit(session, actor=actor, action="semester.closure.add", entity=closure, after=snapshot(closure))
    return closure


def _refuse_closure_over_history(session: Session, closed_on: date) -> None:
    """A day with marked attendance or a booked make-up cannot become a closure silently:
    the admin un-marks or cancels first, so credits and bills stay consistent."""
    marked = session.exec(select(Attendance.id).where(Attendance.lesson_date == closed_on)).first()
    if marked is not None:
        raise Conflict(f"attendance is already marked on {closed_on}; closures are for days without lessons")
    booked = session.exec(select(MakeUp.id).where(MakeUp.lesson_date == closed_on, MakeUp.status.in_(TAKEN_STATUSES))).first()
    if booked is not None:
        raise Conflict(f"make-up {booked} is booked on {closed_on}; cancel it before closing the day")


def remove_closure(session: Session, *, semester: Semester, closed_on: date, actor: str) -> None:
    """Reopen a closed date."""
    closure = session.exec(
        select(SemesterClosure).where(SemesterClosure.semester_id == semester.id, SemesterClosure.closed_on == closed_on)
    ).first()
    if closure is None:
        raise NotFound(f"{closed_on} is not a closure of {semester.name}", field="date")
    record_audit(session, actor=actor, action="semester.closure.remove", entity=closure, before=snapshot(closure))
    session.delete(closure)
    session.flush()
