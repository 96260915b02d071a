"""Payroll (issue 15): what each teacher is owed for the lessons they taught over a range of
dates, and the teacher's rate per lesson (`set_teacher_rate`, an audited write).

What counts, lesson by lesson, from the record of what happened:
- A weekly lesson is paid by its attendance mark: `present` and `no_show` are paid (the
  teacher was there), `late_cancel` too unless PAY_LATE_CANCEL is false (and unless a make-up
  took its slot-date: that half hour is paid once, as the make-up); `excused` and
  `teacher_cancelled` never. It is paid to whoever taught it: the substitute recorded on the
  mark (`attendance.taught_by_id`), else the slot's teacher.
- A make-up has no attendance mark: a make-up is paid once it took place, that is `used`, or
  still `booked` with its date past (the daily job turns those `used` without asking anyone,
  so payroll does not wait for it), to `makeup.taught_by_id`, else the slot's teacher.
- A weekly lesson of the range with no mark yet, up to today, is *unmarked*: listed under
  the teacher expected to give it (the substitute of a time off covering its date, else the
  slot's teacher) and not paid until it is marked. Lesson dates are the enrollment's real ones
  (its dates, its semester's end, closures removed), as `models.lessons` lists them; a
  make-up booked for today is unmarked until its day is over.

Amounts are integer cents: the lessons paid times the teacher's current `rate_cents` (empty:
no amount until a rate is set; the schema keeps no history of rates, the audit trail does).
A constant number of queries whatever the size of the studio (tests/test_payroll.py counts them).
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, col

from models.attendance import BOOKED, LATE_CANCEL, NO_SHOW, PRESENT, USED, Attendance, MakeUp
from models.audit import change_audited
from models.billing import MAX_AMOUNT_CENTS, parse_amount
from models.clock import studio_today
from models.config import get_settings
from models.enrollment import TAUGHT_STATUSES, Enrollment
from models.errors import Invalid
from models.people import Student, Teacher
from models.reports import csv_cell
from models.scheduling import Semester, Timeslot, closures_by_semester, slot_dates
from models.time_off import TimeOff

LESSON, MAKEUP = "lesson", "makeup"
MAKEUP_TAUGHT = "makeup"  # the `status` of a paid make-up in the detail (it has no attendance mark)


def paid_statuses() -> tuple[str, ...]:
    """The attendance marks that pay the teacher under the current settings."""
    return (PRESENT, NO_SHOW, LATE_CANCEL) if get_settings().PAY_LATE_CANCEL else (PRESENT, NO_SHOW)


# The rate ------------------------------------------------------------------------------


def set_teacher_rate(session: Session, teacher: Teacher, *, per_lesson: str, actor: str) -> Teacher:
    """Set what `teacher` is paid per lesson taught, from an amount such as `25.00` (Invalid
    when negative, malformed, finer than a cent or past MAX_AMOUNT_CENTS); audited."""
    try:
        cents = parse_amount(per_lesson)
    except Invalid as error:
        raise Invalid(error.detail, field="per_lesson") from None
    if cents > MAX_AMOUNT_CENTS:
        raise Invalid(f"a rate per lesson must be at most {MAX_AMOUNT_CENTS / 100:.2f}", field="per_lesson")
    change_audited(session, teacher, actor=actor, action="teacher.set_rate", rate_cents=cents)
    return teacher


# The report ----------------------------------------------------------------------------


def payroll(session: Session, *, first: date, last: date, teacher: Teacher | None = None, today: date | None = None) -> dict:
    """Per teacher (every active one, and any other with lessons in the range; only `teacher`
    when given): the lessons paid from `first` to `last` (both included), the amount in cents,
    each paid lesson (`lessons`, with its attendance or make-up id) and the unmarked ones.
    Invalid when `last` is before `first`."""
    if last < first:
        raise Invalid(f"`to` ({last}) is before `from` ({first})", field="to")
    today = today or studio_today()
    cutoff = min(last, today)  # unmarked lessons are looked for up to today only
    only = teacher.id if teacher is not None else None
    away = _time_off(session, first, cutoff)
    # With one teacher: the slots of the teachers they stood in for are theirs to mark too.
    slot_teachers = None if only is None else {only} | {row[0] for row in away if row[3] == only}
    paid, marked = _attendance(session, first, last, only, slot_teachers)
    makeups, pending = _makeups(session, first, last, today, only)
    # A late-cancelled lesson's slot-date taken by a make-up is paid once, as the make-up: the
    # teacher's half hour was taught (and is paid) once.
    taught_again = {(entry["timeslot_id"], entry["date"]) for entry in makeups}
    paid = [
        entry for entry in paid if entry["status"] != LATE_CANCEL or (entry["timeslot_id"], entry["date"]) not in taught_again
    ]
    unmarked = _unmarked(session, first, cutoff, slot_teachers, marked, away)
    unmarked += pending

    lessons_of: dict[int, list[dict]] = defaultdict(list)
    for entry in paid + makeups:
        lessons_of[entry.pop("teacher_id")].append(entry)
    unmarked_of: dict[int, list[dict]] = defaultdict(list)
    for entry in unmarked:
        if only is None or entry["teacher_id"] == only:
            unmarked_of[entry.pop("teacher_id")].append(entry)
    everyone = _teachers(session)
    emails = {row.id: row.email for row in everyone}
    listed = (
        [row for row in everyone if row.id == only]
        if only is not None
        else [row for row in everyone if row.active or row.id in lessons_of or row.id in unmarked_of]
    )
    rows = []
    for row in listed:
        taught = sorted(lessons_of.get(row.id, []), key=_by_date)
        amount = None if row.rate_cents is None else row.rate_cents * len(taught)
        for entry in taught:
            entry["amount_cents"] = row.rate_cents
        for entry in taught + unmarked_of.get(row.id, []):
            entry["substitute_for"] = emails.get(entry["substitute_for_id"])
        rows.append(
            {
                "teacher_id": row.id,
                "email": row.email,
                "name": row.name,
                "active": row.active,
                "rate_cents": row.rate_cents,
                "lessons_paid": len(taught),
                "amount_cents": amount,
                "by_status": dict(sorted(Counter(entry["status"] for entry in taught).items())),
                "unmarked": sorted(unmarked_of.get(row.id, []), key=_by_date),
                "lessons": taught,
            }
        )
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "unmarked_until": cutoff.isoformat() if cutoff >= first else None,
        "paid_statuses": list(paid_statuses()) + [MAKEUP_TAUGHT],
        "total_cents": sum(row["amount_cents"] or 0 for row in rows),
        "teachers": rows,
    }


def _by_date(entry: dict) -> tuple:
    return entry["date"], entry["start"], entry["kind"], entry.get("attendance_id") or entry.get("makeup_id") or 0


def _slot_fields(day: date, slot_id: int, minute: int, student_id: int, student: str, slot_teacher: int, taught_by) -> dict:
    return {
        "date": day.isoformat(),
        "start": f"{minute // 60:02d}:{minute % 60:02d}",
        "timeslot_id": slot_id,
        "student_id": student_id,
        "student": student,
        # The slot's teacher, when someone else taught (or is to teach) the lesson.
        "substitute_for_id": slot_teacher if taught_by != slot_teacher else None,
        "teacher_id": taught_by,
    }


def _teachers(session: Session) -> list[Teacher]:
    """Every teacher by name (a studio has tens): the listed ones and the emails of those stood in for."""
    return list(session.execute(sa.select(Teacher).order_by(col(Teacher.name), col(Teacher.id))).scalars().all())


def _time_off(session: Session, first: date, last: date) -> list[tuple[int, date, date, int | None]]:
    """(teacher, starts, ends, substitute) of every time off overlapping the range."""
    if last < first:
        return []
    rows = session.execute(
        sa.select(col(TimeOff.teacher_id), col(TimeOff.starts_on), col(TimeOff.ends_on), col(TimeOff.substitute_id)).where(
            col(TimeOff.starts_on) <= last, col(TimeOff.ends_on) >= first
        )
    ).all()
    return [tuple(row) for row in rows]


def _attendance(
    session: Session, first: date, last: date, only: int | None, slot_teachers: set[int] | None
) -> tuple[list[dict], set[tuple[int, date]]]:
    """The paid marks of the range (as detail entries) and every marked (enrollment, date)."""
    taught_by = sa.func.coalesce(col(Attendance.taught_by_id), col(Timeslot.teacher_id))
    statement = (
        sa.select(
            col(Attendance.id),
            col(Attendance.enrollment_id),
            col(Attendance.lesson_date),
            col(Attendance.status),
            taught_by,
            col(Timeslot.id),
            col(Timeslot.start_minute),
            col(Timeslot.teacher_id),
            col(Student.id),
            col(Student.name),
        )
        .join(Enrollment, col(Enrollment.id) == Attendance.enrollment_id)
        .join(Timeslot, col(Timeslot.id) == Enrollment.timeslot_id)
        .join(Student, col(Student.id) == Enrollment.student_id)
        .where(col(Attendance.lesson_date) >= first, col(Attendance.lesson_date) <= last)
    )
    if only is not None:
        statement = statement.where(sa.or_(taught_by == only, col(Timeslot.teacher_id).in_(sorted(slot_teachers or ()))))
    paying = paid_statuses()
    paid, marked = [], set()
    for (
        attendance_id,
        enrollment_id,
        day,
        status,
        teacher_id,
        slot_id,
        minute,
        slot_teacher,
        student_id,
        student,
    ) in session.execute(statement).all():
        marked.add((enrollment_id, day))
        if status in paying and (only is None or teacher_id == only):
            paid.append(
                {
                    "kind": LESSON,
                    "attendance_id": attendance_id,
                    "enrollment_id": enrollment_id,
                    "makeup_id": None,
                    "status": status,
                    **_slot_fields(day, slot_id, minute, student_id, student, slot_teacher, teacher_id),
                }
            )
    return paid, marked


def _makeups(session: Session, first: date, last: date, today: date, only: int | None) -> tuple[list[dict], list[dict]]:
    """The make-ups of the range that took place (paid) and those booked for today (unmarked)."""
    taught_by = sa.func.coalesce(col(MakeUp.taught_by_id), col(Timeslot.teacher_id))
    happened = sa.or_(col(MakeUp.status) == USED, sa.and_(col(MakeUp.status) == BOOKED, col(MakeUp.lesson_date) < today))
    today_booked = sa.and_(col(MakeUp.status) == BOOKED, col(MakeUp.lesson_date) == today)
    statement = (
        sa.select(
            col(MakeUp.id),
            col(MakeUp.lesson_date),
            col(MakeUp.status),
            taught_by,
            col(Timeslot.id),
            col(Timeslot.start_minute),
            col(Timeslot.teacher_id),
            col(Student.id),
            col(Student.name),
        )
        .join(Timeslot, col(Timeslot.id) == MakeUp.timeslot_id)
        .join(Student, col(Student.id) == MakeUp.student_id)
        .where(col(MakeUp.lesson_date) >= first, col(MakeUp.lesson_date) <= last, sa.or_(happened, today_booked))
    )
    if only is not None:
        statement = statement.where(taught_by == only)
    paid, pending = [], []
    for makeup_id, day, status, teacher_id, slot_id, minute, slot_teacher, student_id, student in session.execute(statement):
        entry = {
            "kind": MAKEUP,
            "attendance_id": None,
            "enrollment_id": None,
            "makeup_id": makeup_id,
            "status": MAKEUP_TAUGHT,
            **_slot_fields(day, slot_id, minute, student_id, student, slot_teacher, teacher_id),
        }
        if status == BOOKED and day >= today:
            del entry["attendance_id"]
            pending.append(entry | {"status": BOOKED})
        else:
            paid.append(entry)
    return paid, pending


def _unmarked(
    session: Session,
    first: date,
    last: date,
    slot_teachers: set[int] | None,
    marked: set[tuple[int, date]],
    away: list[tuple[int, date, date, int | None]],
) -> list[dict]:
    """Every lesson date of a taught enrollment from `first` to `last` without a mark."""
    if last < first:
        return []
    closures = closures_by_semester(session, first, last)
    every_closure = set().union(*closures.values())
    statement = (
        sa.select(
            col(Enrollment.id),
            col(Enrollment.start_date),
            col(Enrollment.end_date),
            col(Enrollment.semester_id),
            col(Semester.ends_on),
            col(Timeslot.id),
            col(Timeslot.weekday),
            col(Timeslot.start_minute),
            col(Timeslot.teacher_id),
            col(Student.id),
            col(Student.name),
        )
        .join(Timeslot, col(Timeslot.id) == Enrollment.timeslot_id)
        .join(Student, col(Student.id) == Enrollment.student_id)
        .outerjoin(Semester, col(Semester.id) == Enrollment.semester_id)
        .where(
            col(Enrollment.status).in_(TAUGHT_STATUSES),
            col(Enrollment.start_date) <= last,
            sa.or_(col(Enrollment.end_date).is_(None), col(Enrollment.end_date) >= first),
        )
    )
    if slot_teachers is not None:
        statement = statement.where(col(Timeslot.teacher_id).in_(sorted(slot_teachers)))
    substitutes: dict[int, list[tuple[date, date, int]]] = defaultdict(list)
    for teacher_id, starts, ends, substitute in away:
        if substitute is not None:
            substitutes[teacher_id].append((starts, ends, substitute))
    found = []
    for (
        enrollment_id,
        start_date,
        end_date,
        semester_id,
        semester_end,
        slot_id,
        weekday,
        minute,
        slot_teacher,
        student_id,
        student,
    ) in session.execute(statement).all():
        end = min(last, end_date or semester_end or last)
        closed = closures.get(semester_id, set()) if semester_id else every_closure
        for day in slot_dates(weekday, max(first, start_date), end, closed):
            if (enrollment_id, day) in marked:
                continue
            expected = next((sub for starts, ends, sub in substitutes[slot_teacher] if starts <= day <= ends), slot_teacher)
            found.append(
                {
                    "kind": LESSON,
                    "enrollment_id": enrollment_id,
                    "makeup_id": None,
                    "status": None,
                    **_slot_fields(day, slot_id, minute, student_id, student, slot_teacher, expected),
                }
            )
    return found


# CSV -----------------------------------------------------------------------------------

SUMMARY_COLUMNS = ["from", "to", "email", "name", "rate_cents", "lessons_paid", "amount_cents", "unmarked"]
DETAIL_COLUMNS = ["email", "name", "date", "start", "kind", "attendance_id", "makeup_id", "enrollment_id", "status"]
DETAIL_COLUMNS += ["student", "timeslot_id", "substitute_for", "amount_cents"]


def payroll_csv(report: dict, *, detail: bool = False) -> str:
    """The report as CSV: one line per teacher, or with `detail` one per paid lesson (cells
    made safe to open in a spreadsheet, `models.reports.csv_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DETAIL_COLUMNS if detail else SUMMARY_COLUMNS)
    for row in report["teachers"]:
        if detail:
            for lesson in row["lessons"]:
                values = {**lesson, "email": row["email"], "name": row["name"]}
                writer.writerow([csv_cell(values[name]) for name in DETAIL_COLUMNS])
        else:
            values = {**row, "from": report["from"], "to": report["to"], "unmarked": len(row["unmarked"])}
            writer.writerow([csv_cell(values[name]) for name in SUMMARY_COLUMNS])
    return out.getvalue()
