"""A studio's roster in and out as CSV: one row per enrollment (or a family or student without one).

`read_roster` parses a file and says what is wrong with each line; `import_roster` then writes
every row in the caller's one unit of work through the audited operations the CLI uses
(`add_payee`, `add_student`, `add_timeslot`, and the booking door `assign_enrollment`, so every
booking rule and the audit apply), each row in a savepoint so that every failing row is named,
and rolls everything back when any row failed (`RosterRefused`) or on a dry run. What exists is
matched, never changed: a family by email, a student by family and name, a slot by teacher,
weekday and time, and a live enrollment of that student on that slot is already there — so
importing a file again, or `models.roster_export`'s output, changes nothing.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.billing import Plan, get_plan
from models.booking import assign_enrollment
from models.clock import WEEKDAYS, slot_label
from models.enrollment import LIVE_STATUSES, PROVISIONAL, Enrollment
from models.errors import Conflict, DomainError, Invalid, SlotTaken
from models.people import Instrument, Payee, Student, Teacher, add_payee, add_student, normalise_email
from models.reports import FORMULA_STARTS
from models.scheduling import Timeslot, add_timeslot, parse_hhmm, parse_weekday

COLUMNS = (
    "family_email",
    "family_name",
    "phone",
    "student",
    "birth_date",
    "instrument",
    "teacher_email",
    "weekday",
    "time",
    "plan",
    "start_date",
)
ENROLLMENT_COLUMNS = ("instrument", "teacher_email", "weekday", "time", "plan", "start_date")
# start(description, total) → advance(): the CLI's progress bar.
Progress = Callable[[str, int], Callable[[], None]]


@dataclass(frozen=True)
class RosterRow:
    """One parsed line. `student` empty: a family alone; `teacher_email` None: a student without a slot."""

    line: int
    family_email: str
    family_name: str
    phone: str | None
    student: str
    birth_date: date | None
    instrument: str | None
    teacher_email: str | None
    weekday: int | None
    start_minute: int | None
    plan: str | None  # None: offline (paid outside Stripe)
    start_date: date | None

    @property
    def slot(self) -> str:
        if self.teacher_email is None or self.weekday is None or self.start_minute is None:
            return ""
        return f"{self.teacher_email} {slot_label(self.weekday, self.start_minute)}"


@dataclass(frozen=True)
class RosterProblem:
    """Why a line cannot be imported."""

    line: int
    reason: str


class RosterRefused(Invalid):
    """At least one line is bad: nothing was imported; `problems` names each, by line."""

    def __init__(self, problems: list[RosterProblem]):
        super().__init__(f"{len(problems)} bad row(s) in the roster; nothing was imported", field="file")
        self.problems = sorted(problems, key=lambda problem: problem.line)


@dataclass
class RosterResult:
    """What an import created (or, on a dry run, would create), row by row."""

    families: int = 0
    students: int = 0
    timeslots: int = 0
    enrollments: int = 0
    unchanged: int = 0  # rows already there, whole
    rows: list[dict[str, Any]] = field(default_factory=list)
    provisional_ids: list[int] = field(default_factory=list)  # holds whose Stripe booking is queued after commit


# Reading the file ---------------------------------------------------------------------------


def _cell(value: str | None) -> str:
    """A cell stripped; an exported cell's formula guard (`'=...`, `csv_cell`) taken off again."""
    text = (value or "").strip()
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def _parse_date(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{name} {text!r} is not a date (YYYY-MM-DD)", field=name) from None


def _parse_row(line: int, cells: dict[str, str]) -> RosterRow:
    """One line's cells as a RosterRow; Invalid naming every fault of the line (joined by '; ')."""
    faults: list[str] = []

    def attempt(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except DomainError as error:
            faults.append(error.detail)
            return None

    if not cells["family_email"]:
        faults.append("family_email is empty")
    email = attempt(lambda: normalise_email(cells["family_email"])) if cells["family_email"] else ""
    if not cells["family_name"]:
        faults.append("family_name is empty")
    birth_date = attempt(lambda: _parse_date(cells["birth_date"], "birth_date"))
    start_date = attempt(lambda: _parse_date(cells["start_date"], "start_date"))
    given = [name for name in ENROLLMENT_COLUMNS if cells[name]]
    weekday = start_minute = None
    teacher_email = instrument = None
    if given:
        missing = [name for name in ("instrument", "teacher_email", "weekday", "time") if not cells[name]]
        if missing:
            faults.append(f"an enrollment needs {', '.join(missing)} too")
        if not cells["student"]:
            faults.append("an enrollment needs a student")
        instrument = cells["instrument"].lower() or None
        teacher_email = attempt(lambda: normalise_email(cells["teacher_email"])) if cells["teacher_email"] else None
        weekday = attempt(lambda: parse_weekday(cells["weekday"])) if cells["weekday"] else None
        start_minute = attempt(lambda: parse_hhmm(cells["time"])) if cells["time"] else None
        if start_date is not None and weekday is not None and start_date.weekday() != weekday:
            faults.append(f"start_date {start_date} is not a {WEEKDAYS[weekday].title()}")
    elif not cells["student"] and cells["birth_date"]:
        faults.append("a birth_date needs a student")
    if faults:
        raise Invalid("; ".join(faults))
    return RosterRow(
        line=line,
        family_email=email,
        family_name=cells["family_name"],
        phone=cells["phone"] or None,
        student=cells["student"],
        birth_date=birth_date,
        instrument=instrument,
        teacher_email=teacher_email,
        weekday=weekday,
        start_minute=start_minute,
        plan=cells["plan"] or None,
        start_date=start_date,
    )


def read_roster(lines: Iterable[str]) -> tuple[list[RosterRow], list[RosterProblem]]:
    """Parse a roster CSV (a header of COLUMNS, in any order; blank lines skipped): the rows
    and the problems, one per bad line (line 1 is the header)."""
    reader = csv.reader(lines)
    header = [_cell(name).lower() for name in next(reader, [])]
    missing = [name for name in COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        said = [
            f"missing column(s) {', '.join(missing)}" if missing else "",
            f"unknown column(s) {', '.join(unknown)}" if unknown else "",
        ]
        reason = "; ".join(part for part in said if part) or "a column is named twice"
        return [], [RosterProblem(1, f"the header must name {','.join(COLUMNS)}: {reason}")]
    rows, problems = [], []
    line = reader.line_num + 1
    for record in reader:
        if any(value.strip() for value in record):
            if len(record) != len(header):
                problems.append(RosterProblem(line, f"{len(record)} cells where the header has {len(header)}"))
            else:
                try:
                    rows.append(_parse_row(line, {name: _cell(value) for name, value in zip(header, record, strict=True)}))
                except Invalid as error:
                    problems.append(RosterProblem(line, error.detail))
        line = reader.line_num + 1
    return rows, problems


# Checking it against the studio ---------------------------------------------------------------


@dataclass
class _Known:
    """What exists already, keyed as the roster names it; a row's additions are undone when it fails."""

    teachers: dict[str, Teacher]
    instruments: set[str]
    plans: dict[str, Plan]
    payees: dict[str, Payee] = field(default_factory=dict)
    students: dict[tuple[int, str], list[Student]] = field(default_factory=dict)
    slots: dict[tuple[int, int, int], Timeslot] = field(default_factory=dict)
    live: set[tuple[int, int]] = field(default_factory=set)  # (student id, timeslot id)
    claimed: dict[int, int] = field(default_factory=dict)  # timeslot id → the line enrolled on it by this import
    added: list[tuple[Any, Any]] = field(default_factory=list)

    def add(self, holder: Any, key: Any, value: Any = None) -> None:
        if isinstance(holder, set):
            holder.add(key)
        else:
            holder[key] = value
        self.added.append((holder, key))

    def undo(self) -> None:
        for holder, key in reversed(self.added):
            holder.discard(key) if isinstance(holder, set) else holder.pop(key, None)
        self.added.clear()


def _check(session: Session, rows: list[RosterRow]) -> tuple[_Known, list[RosterProblem]]:
    """Teachers, instruments and plans named must exist; a family and a student read the same on
    every line that names them. (A line repeated is already there the second time; two students
    on one slot are for the booking rules, a slot being held for dates.) Then what exists of the
    roster's families, students, slots and live enrollments is read, a few statements in all."""
    emails = {row.teacher_email for row in rows if row.teacher_email}
    teachers = {t.email: t for t in session.exec(select(Teacher).where(col(Teacher.email).in_(emails))).all()}
    instruments = set(session.exec(select(Instrument.name)).all())
    known = _Known(teachers=teachers, instruments=instruments, plans={})
    problems: list[RosterProblem] = []
    families: dict[str, RosterRow] = {}
    students: dict[tuple[str, str], RosterRow] = {}
    for row in rows:
        faults = []
        first = families.setdefault(row.family_email, row)
        if (first.family_name, first.phone) != (row.family_name, row.phone):
            faults.append(
                f"family {row.family_email} is {first.family_name!r} (phone {first.phone or 'none'}) on line {first.line}"
            )
        if row.student:
            first = students.setdefault((row.family_email, row.student.casefold()), row)
            if first.birth_date != row.birth_date:
                faults.append(f"{row.student} is born {first.birth_date or 'on no date'} on line {first.line}")
        if row.teacher_email:
            if row.teacher_email not in teachers:
                faults.append(f"no teacher {row.teacher_email}")
            if row.instrument not in instruments:
                faults.append(f"no instrument named {row.instrument!r}")
            if row.plan is not None and row.plan not in known.plans:
                try:
                    known.plans[row.plan] = get_plan(session, row.plan)
                except DomainError as error:
                    faults.append(error.detail)
        if faults:
            problems.append(RosterProblem(row.line, "; ".join(faults)))
    family_emails = list(families)
    known.payees = {p.email: p for p in session.exec(select(Payee).where(col(Payee.email).in_(family_emails))).all()}
    payee_ids = [payee.id for payee in known.payees.values()]
    for student in session.exec(
        select(Student).where(col(Student.payee_id).in_(payee_ids), col(Student.archived_at).is_(None)).order_by(col(Student.id))
    ).all():
        known.students.setdefault((student.payee_id, student.name.casefold()), []).append(student)
    teacher_ids = [teacher.id for teacher in teachers.values()]
    for slot in session.exec(select(Timeslot).where(col(Timeslot.teacher_id).in_(teacher_ids))).all():
        known.slots[(slot.teacher_id, slot.weekday, slot.start_minute)] = slot
    known.live = {
        (student_id, timeslot_id)
        for student_id, timeslot_id in session.exec(
            select(Enrollment.student_id, Enrollment.timeslot_id)
            .join(Timeslot, col(Timeslot.id) == col(Enrollment.timeslot_id))
            .where(col(Timeslot.teacher_id).in_(teacher_ids), col(Enrollment.status).in_(LIVE_STATUSES))
        ).all()
    }
    return known, problems


# Writing it -------------------------------------------------------------------------------------


def _import_row(session: Session, row: RosterRow, known: _Known, result: RosterResult, actor: str) -> None:
    """Create what the row names that does not exist yet; SlotTaken, Invalid... as the booking says."""
    creates: list[str] = []
    payee = known.payees.get(row.family_email)
    if payee is None:
        payee = add_payee(session, name=row.family_name, email=row.family_email, phone=row.phone, actor=actor)
        known.add(known.payees, row.family_email, payee)
        creates.append("family")
    if row.student:
        found = known.students.get((payee.id, row.student.casefold()), [])
        if len(found) > 1:
            raise Conflict(f"{row.family_email} has {len(found)} students named {row.student!r}; archive or rename one first")
        if found:
            student = found[0]
        else:
            student = add_student(session, payee=payee, name=row.student, birth_date=row.birth_date, actor=actor)
            known.add(known.students, (payee.id, row.student.casefold()), [student])
            creates.append("student")
        if row.teacher_email is not None and row.weekday is not None and row.start_minute is not None:
            teacher = known.teachers[row.teacher_email]
            slot = known.slots.get((teacher.id, row.weekday, row.start_minute))
            if slot is None:
                slot = add_timeslot(session, teacher=teacher, weekday=row.weekday, start_minute=row.start_minute, actor=actor)
                known.add(known.slots, (teacher.id, row.weekday, row.start_minute), slot)
                creates.append("timeslot")
            if (student.id, slot.id) not in known.live:
                try:
                    enrollment = assign_enrollment(
                        session,
                        student_id=student.id,
                        timeslot_id=slot.id,
                        instrument=row.instrument or "",
                        plan=known.plans[row.plan].id if row.plan is not None else None,
                        start_date=row.start_date,
                        offline=row.plan is None,
                        actor=actor,
                    )
                except SlotTaken:
                    if slot.id not in known.claimed:  # taken before the import: the booking's own words
                        raise
                    # by an earlier line (the slot may be new: its id would name nothing once rolled back)
                    raise SlotTaken(f"{row.slot} is taken by line {known.claimed[slot.id]}") from None
                known.add(known.live, (student.id, slot.id))
                known.add(known.claimed, slot.id, row.line)
                creates.append("enrollment")
                if enrollment.status == PROVISIONAL:
                    result.provisional_ids.append(enrollment.id)
    result.rows.append(
        {
            "line": row.line,
            "family": row.family_email,
            "student": row.student,
            "slot": row.slot,
            "plan": row.plan or "offline",
            "creates": creates,
        }
    )


def import_roster(
    session: Session, lines: Iterable[str], *, actor: str, dry_run: bool = False, progress: Progress | None = None
) -> RosterResult:
    """Import a roster CSV (its lines) in the caller's unit of work, all or nothing.

    Every line is parsed and checked first; then each good one is written in its own
    savepoint, so a row the booking rules refuse is named too. Any problem rolls everything
    back and raises RosterRefused with every bad line. `dry_run`: the same, then rolled back:
    the result says what would be created. The caller queues the Stripe booking of
    `provisional_ids` after commit."""
    rows, problems = read_roster(lines)
    known, checked = _check(session, rows)
    bad = {problem.line for problem in checked}
    problems += checked
    rows = [row for row in rows if row.line not in bad]
    result = RosterResult()
    advance = progress("importing", len(rows)) if progress else None
    whole = session.begin_nested()
    try:
        for row in rows:
            try:
                with session.begin_nested():
                    _import_row(session, row, known, result, actor)
                known.added.clear()
            except (DomainError, sa.exc.IntegrityError) as error:
                known.undo()
                reason = (
                    error.detail if isinstance(error, DomainError) else "refused by the database (a uniqueness or reference rule)"
                )
                problems.append(RosterProblem(row.line, reason))
            if advance:
                advance()
    except BaseException:
        whole.rollback()
        raise
    if problems or dry_run:
        whole.rollback()
        result.provisional_ids = []
    else:
        whole.commit()
    if problems:
        raise RosterRefused(problems)
    counts = Counter(kind for item in result.rows for kind in item["creates"])
    result.families, result.students = counts["family"], counts["student"]
    result.timeslots, result.enrollments = counts["timeslot"], counts["enrollment"]
    result.unchanged = sum(1 for item in result.rows if not item["creates"])
    return result
