"""Read models for the admin: each row of the studio as a plain, JSON-safe dict, and the list
queries behind `studioctl ... list`.

Views never change anything. They resolve ids into the names an admin reads (teacher,
student, family, instrument, `Mon 16:00`), so the CLI only formats what it gets here.
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta

from sqlmodel import Session, func, select

from models.attendance import ATTENDANCE_STATUSES, AVAILABLE, MAKEUP_STATUSES, Attendance, MakeUp
from models.audit import snapshot
from models.billing import Plan
from models.clock import WEEKDAYS, format_minute, studio_today
from models.enrollment import LIVE_STATUSES, STATUSES, Enrollment
from models.errors import Invalid
from models.locations import Location, Room, place_of
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument, teacher_instruments
from models.scheduling import Semester, Timeslot, closures_of
from models.tables import TABLES


def _iso(value):
    return value.isoformat() if value is not None else None


def _name(session: Session, model, row_id: int | None) -> str | None:
    row = session.get(model, row_id) if row_id is not None else None
    return row.name if row is not None else None


# Instruments and people -----------------------------------------------------------------


def list_instruments(session: Session) -> list[dict]:
    """Every instrument with how many teachers teach it, by name."""
    counts = dict(
        session.exec(select(TeacherInstrument.instrument_id, func.count()).group_by(TeacherInstrument.instrument_id)).all()
    )
    return [
        {"id": row.id, "name": row.name, "teachers": counts.get(row.id, 0)}
        for row in session.exec(select(Instrument).order_by(Instrument.name)).all()
    ]


def teacher_view(session: Session, teacher: Teacher) -> dict:
    """A teacher with instruments and the number of active slots."""
    slots = session.exec(
        select(func.count(Timeslot.id)).where(Timeslot.teacher_id == teacher.id, Timeslot.active.is_(True))
    ).one()
    return {
        "id": teacher.id,
        "name": teacher.name,
        "email": teacher.email,
        "active": teacher.active,
        "instruments": teacher_instruments(session, teacher.id),
        "slots": slots,
        "bio": teacher.bio,
        "rate_cents": teacher.rate_cents,
    }


def list_teachers(session: Session, *, include_inactive: bool = False) -> list[dict]:
    """Teachers by name; only active ones unless `include_inactive`."""
    statement = select(Teacher).order_by(Teacher.name, Teacher.id)
    if not include_inactive:
        statement = statement.where(Teacher.active.is_(True))
    return [teacher_view(session, teacher) for teacher in session.exec(statement).all()]


def student_view(session: Session, student: Student) -> dict:
    """A student with the family's name."""
    return {
        "id": student.id,
        "name": student.name,
        "payee_id": student.payee_id,
        "payee": _name(session, Payee, student.payee_id),
        "birth_date": _iso(student.birth_date),
        "notes": student.notes,
        "archived": student.archived_at is not None,
    }


def list_students(session: Session, *, payee_id: int | None = None) -> list[dict]:
    """Current (not archived) students by name, optionally one family's."""
    statement = select(Student).where(Student.archived_at.is_(None)).order_by(Student.name, Student.id)
    if payee_id is not None:
        statement = statement.where(Student.payee_id == payee_id)
    return [student_view(session, student) for student in session.exec(statement).all()]


def payee_view(session: Session, payee: Payee, *, with_students: bool = False) -> dict:
    """A payee; `with_students` adds the family's current students."""
    students = list_students(session, payee_id=payee.id)
    view = {
        "id": payee.id,
        "name": payee.name,
        "email": payee.email,
        "phone": payee.phone,
        "signed_up": payee.supabase_user_id is not None,
        "stripe_customer_id": payee.stripe_customer_id,
        "student_count": len(students),
    }
    if with_students:
        view["students"] = students
    return view


def list_payees(session: Session) -> list[dict]:
    """Every payee by name."""
    return [payee_view(session, payee) for payee in session.exec(select(Payee).order_by(Payee.name, Payee.id)).all()]


# Timeslots and semesters ------------------------------------------------------------------


def timeslot_view(session: Session, slot: Timeslot, *, holder: Enrollment | None = None) -> dict:
    """A slot with its teacher and whether it can be booked (active, teacher active, not held
    forever: `holder` is its last live enrollment, and a booking starts after its `end_date`)."""
    teacher = session.get(Teacher, slot.teacher_id)
    place = place_of(session, slot.room_id)
    return {
        "id": slot.id,
        "teacher_id": slot.teacher_id,
        "teacher": teacher.name,
        "weekday": WEEKDAYS[slot.weekday],
        "start": format_minute(slot.start_minute),
        "end": format_minute(slot.start_minute + 30),
        "active": slot.active,
        "available": slot.active and teacher.active and (holder is None or holder.end_date is not None),
        "enrollment_id": holder.id if holder else None,
        "held_until": _iso(holder.end_date) if holder else None,
        "room_id": slot.room_id,
        "room": place.label if place else None,
    }


def list_timeslots(
    session: Session, *, teacher_id: int | None = None, weekday: int | None = None, available: bool = False
) -> list[dict]:
    """Slots by teacher, weekday and time; `available` keeps only bookable ones."""
    statement = select(Timeslot).order_by(Timeslot.teacher_id, Timeslot.weekday, Timeslot.start_minute)
    if teacher_id is not None:
        statement = statement.where(Timeslot.teacher_id == teacher_id)
    if weekday is not None:
        statement = statement.where(Timeslot.weekday == weekday)
    # A slot's live enrollments never overlap in dates: the one starting last ends last.
    holders = {
        enrollment.timeslot_id: enrollment
        for enrollment in session.exec(
            select(Enrollment).where(Enrollment.status.in_(LIVE_STATUSES)).order_by(Enrollment.start_date)
        ).all()
    }
    rows = [timeslot_view(session, slot, holder=holders.get(slot.id)) for slot in session.exec(statement).all()]
    return [row for row in rows if row["available"]] if available else rows


def semester_view(session: Session, semester: Semester) -> dict:
    """A semester with its closures and make-up window."""
    return {
        "id": semester.id,
        "name": semester.name,
        "starts_on": _iso(semester.starts_on),
        "ends_on": _iso(semester.ends_on),
        "makeup_starts_on": _iso(semester.makeup_starts_on),
        "makeup_ends_on": _iso(semester.makeup_ends_on),
        "closures": [_iso(day) for day in sorted(closures_of(session, semester.id))],
    }


def list_semesters(session: Session) -> list[dict]:
    """Every semester, oldest first."""
    return [semester_view(session, semester) for semester in session.exec(select(Semester).order_by(Semester.starts_on)).all()]


# Enrollments, attendance, make-ups --------------------------------------------------------


def enrollment_view(session: Session, enrollment: Enrollment) -> dict:
    """An enrollment with student, family, teacher, slot, instrument and plan resolved."""
    student = session.get(Student, enrollment.student_id)
    slot = session.get(Timeslot, enrollment.timeslot_id)
    plan = session.get(Plan, enrollment.plan_id) if enrollment.plan_id else None
    return {
        "id": enrollment.id,
        "status": enrollment.status,
        "student_id": student.id,
        "student": student.name,
        "payee": _name(session, Payee, student.payee_id),
        "timeslot_id": slot.id,
        "slot": slot.label,
        "teacher": _name(session, Teacher, slot.teacher_id),
        "instrument": _name(session, Instrument, enrollment.instrument_id),
        "plan": plan.frequency if plan else None,
        "offline": enrollment.offline,
        "start_date": _iso(enrollment.start_date),
        "end_date": _iso(enrollment.end_date),
        "semester_id": enrollment.semester_id,
        "provisional_expires_at": _iso(enrollment.provisional_expires_at),
        "failure_reason": enrollment.failure_reason,
        "cancel_reason": enrollment.cancel_reason,
        "cancel_at_period_end": enrollment.cancel_at_period_end,
        "moved_from_id": enrollment.moved_from_id,
        "stripe_subscription_id": enrollment.stripe_subscription_id,
    }


def list_enrollments(
    session: Session, *, status: str | None = None, teacher_id: int | None = None, student_id: int | None = None
) -> list[dict]:
    """Enrollments, newest first, filtered by status, teacher or student."""
    statement = select(Enrollment).order_by(Enrollment.id.desc())
    if status is not None:
        if status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
        statement = statement.where(Enrollment.status == status)
    if teacher_id is not None:
        statement = statement.join(Timeslot, Timeslot.id == Enrollment.timeslot_id).where(Timeslot.teacher_id == teacher_id)
    if student_id is not None:
        statement = statement.where(Enrollment.student_id == student_id)
    return [enrollment_view(session, enrollment) for enrollment in session.exec(statement).all()]


def attendance_view(session: Session, row: Attendance, *, makeup: MakeUp | None = None) -> dict:
    """An attendance mark with the student and the make-up credit it earned, if any."""
    enrollment = session.get(Enrollment, row.enrollment_id)
    if makeup is None:
        makeup = session.exec(select(MakeUp).where(MakeUp.origin_attendance_id == row.id)).first()
    return {
        "id": row.id,
        "enrollment_id": row.enrollment_id,
        "lesson_date": _iso(row.lesson_date),
        "status": row.status,
        "student": _name(session, Student, enrollment.student_id),
        "note": row.note,
        "makeup_id": makeup.id if makeup else None,
    }


def list_attendance(session: Session, *, day: date | None = None, enrollment_id: int | None = None) -> list[dict]:
    """Attendance marks, newest lesson first, for a date and/or an enrollment."""
    statement = select(Attendance).order_by(Attendance.lesson_date.desc(), Attendance.enrollment_id)
    if day is not None:
        statement = statement.where(Attendance.lesson_date == day)
    if enrollment_id is not None:
        statement = statement.where(Attendance.enrollment_id == enrollment_id)
    return [attendance_view(session, row) for row in session.exec(statement).all()]


def makeup_view(session: Session, credit: MakeUp) -> dict:
    """A make-up credit with the student and, when booked, the slot-date."""
    slot = session.get(Timeslot, credit.timeslot_id) if credit.timeslot_id else None
    return {
        "id": credit.id,
        "student_id": credit.student_id,
        "student": _name(session, Student, credit.student_id),
        "status": credit.status,
        "reason": credit.reason,
        "instrument": _name(session, Instrument, credit.instrument_id),
        "expires_on": _iso(credit.expires_on),
        "timeslot_id": credit.timeslot_id,
        "slot": slot.label if slot else None,
        "lesson_date": _iso(credit.lesson_date),
        "origin_attendance_id": credit.origin_attendance_id,
    }


def list_makeups(
    session: Session,
    *,
    student_id: int | None = None,
    status: str | None = None,
    expiring_within: int | None = None,
    today: date | None = None,
) -> list[dict]:
    """Make-up credits by expiry; `expiring_within` days keeps available credits expiring soon."""
    statement = select(MakeUp).order_by(MakeUp.expires_on, MakeUp.id)
    if student_id is not None:
        statement = statement.where(MakeUp.student_id == student_id)
    if status is not None:
        if status not in MAKEUP_STATUSES:
            raise Invalid(f"status must be one of {', '.join(MAKEUP_STATUSES)}", field="status")
        statement = statement.where(MakeUp.status == status)
    if expiring_within is not None:
        if expiring_within < 0:
            raise Invalid("--expiring-within must be zero or more days", field="expiring_within")
        today = today or studio_today()
        statement = statement.where(
            MakeUp.status == AVAILABLE, MakeUp.expires_on >= today, MakeUp.expires_on <= today + timedelta(days=expiring_within)
        )
    return [makeup_view(session, credit) for credit in session.exec(statement).all()]


def check_attendance_status(status: str) -> str:
    """Refuse an unknown attendance status before anything is looked up."""
    if status not in ATTENDANCE_STATUSES:
        raise Invalid(f"status must be one of {', '.join(ATTENDANCE_STATUSES)}", field="status")
    return status


# Export -------------------------------------------------------------------------------------


def table_names() -> list[str]:
    """Every table that can be exported, sorted."""
    return sorted(TABLES)


# A text cell a spreadsheet would read as a formula (`=HYPERLINK(...)` as a student's name) or
# whose leading tab/CR it would drop: OWASP's CSV-injection advice, a leading single quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str | int | float | bool:
    """One exported value (as `plain()` gives it): JSON columns as JSON text, NULL empty, text
    that starts like a formula prefixed with `'` (numbers stay numbers)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def export_rows(session: Session, table: str, path, *, progress=None, advance=None) -> int:
    """Write every row of `table` to the CSV file `path` (ordered by primary key); return the
    count. Credentials (`calendar_token`...) are redacted as in the audit trail; cells are
    made safe to open in a spreadsheet (`csv_cell`). `progress(total)` returns a handle that
    `advance(handle)` moves once per row."""
    model = TABLES[table]
    columns = [column.name for column in model.__table__.columns]
    total = session.exec(select(func.count()).select_from(model)).one()
    handle = progress(total) if progress else None
    written = 0
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        statement = select(model).order_by(*model.__table__.primary_key.columns)
        for row in session.exec(statement.execution_options(yield_per=500)):
            values = snapshot(row)  # the audit trail's own view: credentials already redacted
            writer.writerow([csv_cell(values[name]) for name in columns])
            written += 1
            if advance and handle is not None:
                advance(handle)
    return written


# Locations and rooms ----------------------------------------------------------------------


def list_rooms(session: Session, *, location: Location | None = None) -> list[dict]:
    """Every room (of `location`, or of all) by location and name, with the label `--room`
    takes and how many timeslots are in it (one query)."""
    slots = func.count(Timeslot.id)
    statement = (
        select(Room.id, Room.name, Location.id, Location.name, slots)
        .join(Location, Location.id == Room.location_id)
        .outerjoin(Timeslot, Timeslot.room_id == Room.id)
        .group_by(Room.id, Room.name, Location.id, Location.name)
        .order_by(Location.name, Room.name)
    )
    if location is not None:
        statement = statement.where(Room.location_id == location.id)
    return [
        {
            "id": room_id,
            "name": name,
            "location_id": location_id,
            "location": where,
            "label": f"{where}/{name}",
            "timeslots": count,
        }
        for room_id, name, location_id, where, count in session.exec(statement).all()
    ]
