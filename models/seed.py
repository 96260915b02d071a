"""The demo studio: a believable studio built through the same audited operations the admin
uses (teachers, slots, semesters with closures, plans, families, enrollments, attendance).

`studioctl seed demo` is its door; the same `seed` gives the same studio on the same day.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

from sqlmodel import Session, select

from models import attendance as attendance_ops
from models import billing, booking, people, scheduling, terms
from models.base import utcnow
from models.config import get_settings
from models.enrollment import lesson_dates
from models.errors import Conflict, DomainError

DEMO_TEACHERS = (
    ("Ada Lovelace", "ada@studio.example", ["piano"], (0, 2), "15:00", "17:30"),
    ("Jimi Page", "jimi@studio.example", ["guitar", "bass"], (1, 3), "15:30", "18:00"),
    ("Sheila Moon", "sheila@studio.example", ["drums"], (0, 4), "16:00", "18:30"),
    ("Clara Keys", "clara@studio.example", ["piano", "guitar"], (2, 5), "14:00", "16:30"),
)
FAMILY_NAMES = (
    "Garcia",
    "Smith",
    "Nguyen",
    "Okafor",
    "Rossi",
    "Kim",
    "Haddad",
    "Larsen",
    "Silva",
    "Cohen",
    "Murphy",
    "Patel",
    "Dubois",
    "Novak",
    "Tanaka",
    "Walker",
    "Ibrahim",
    "Fischer",
    "Lopez",
    "Moreau",
)
FIRST_NAMES = (
    "Mia",
    "Leo",
    "Ava",
    "Noah",
    "Zoe",
    "Eli",
    "Ivy",
    "Max",
    "Lila",
    "Sam",
    "Nora",
    "Finn",
    "Ruby",
    "Omar",
    "June",
    "Theo",
    "Iris",
    "Jude",
    "Esme",
    "Kai",
    "Rosa",
    "Ezra",
    "Maya",
    "Luca",
    "Ines",
    "Ben",
    "Cleo",
    "Dev",
    "Ella",
    "Gus",
)
# What `seed_demo_studio` reports progress in: one `advance()` after each.
DEMO_STAGES = ("teachers and slots", "semesters", "plans", "families", "enrollments", "attendance")

# The marks the demo seeds for past lessons and their weights: mostly present (a late
# cancellation is the parent's own report, never seeded).
_SEEDED_MARKS = (attendance_ops.PRESENT, attendance_ops.EXCUSED, attendance_ops.NO_SHOW, attendance_ops.TEACHER_CANCELLED)


def studio_has_teachers(session: Session) -> bool:
    """True when any teacher (active or not) exists: the demo only fills an empty studio."""
    return session.exec(select(people.Teacher.id).limit(1)).first() is not None


def ensure_studio_empty(session: Session) -> None:
    """Conflict when the studio already has teachers (the demo would mix with real data)."""
    if studio_has_teachers(session):
        raise Conflict("the studio already has teachers; seed demo only fills an empty database")


def demo_semesters(today: date) -> list[tuple[str, date, date, date, list[date]]]:
    """A running semester around `today` (with closures) and the next one, as
    (name, starts, ends, make-ups end, closures)."""
    fall = today.month >= 8 or today.month == 1
    year = today.year if today.month >= 8 else today.year - 1
    if fall:
        first = (date(year, 9, 7), date(year, 12, 19), date(year + 1, 1, 16), "Fall")
        second = (date(year + 1, 1, 19), date(year + 1, 5, 22), date(year + 1, 6, 5), "Spring")
    else:
        first = (date(today.year, 1, 19), date(today.year, 5, 22), date(today.year, 6, 5), "Spring")
        second = (date(today.year, 9, 7), date(today.year, 12, 19), date(today.year + 1, 1, 16), "Fall")
    semesters = []
    for starts, ends, makeup_ends, season in (first, second):
        # Closures: a long weekend a third in, and a two-day holiday two thirds in.
        span = (ends - starts).days
        third = starts + timedelta(days=span // 3)
        two_thirds = starts + timedelta(days=2 * span // 3)
        closures = [third + timedelta(days=(0 - third.weekday()) % 7)]
        closures += [two_thirds + timedelta(days=(3 - two_thirds.weekday()) % 7 + k) for k in (0, 1)]
        semesters.append((f"{season} {starts.year}", starts, ends, makeup_ends, closures))
    return semesters


def _teachers_and_slots(session: Session, *, actor: str) -> list:
    people.seed_instruments(session, actor=actor)
    teachers = []
    for name, email, instruments, weekdays, start, end in DEMO_TEACHERS:
        teacher = people.add_teacher(
            session,
            name=name,
            email=email,
            instruments=instruments,
            bio=f"{name.split()[0]} teaches {' and '.join(instruments)}.",
            actor=actor,
        )
        teachers.append(teacher)
        for weekday in weekdays:
            scheduling.publish_timeslots(
                session,
                teacher=teacher,
                weekday=weekday,
                from_minute=scheduling.parse_hhmm(start),
                to_minute=scheduling.parse_hhmm(end),
                actor=actor,
            )
    # Top up to ~60 slots with a Saturday morning for everyone.
    for teacher in teachers:
        scheduling.publish_timeslots(
            session,
            teacher=teacher,
            weekday=5 if teacher.email != "clara@studio.example" else 6,
            from_minute=9 * 60,
            to_minute=11 * 60,
            actor=actor,
        )
    return teachers


def _families(session: Session, rng: random.Random, *, actor: str) -> list:
    students = []
    for index, family in enumerate(FAMILY_NAMES):
        parent_first = rng.choice(("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Robin", "Jamie"))
        payee = people.add_payee(
            session,
            name=f"{parent_first} {family}",
            email=f"{parent_first.lower()}.{family.lower()}@family.example",
            phone=f"+1 555 01{index:02d}",
            actor=actor,
        )
        for _ in range(2 if index < 10 else 1):
            students.append(
                people.add_student(
                    session,
                    payee=payee,
                    name=f"{FIRST_NAMES[len(students) % len(FIRST_NAMES)]} {family}",
                    notes=rng.choice((None, "beginner", "second year", "prepping a recital")),
                    actor=actor,
                )
            )
    return students


def seed_demo_studio(
    session: Session, *, today: date, seed: int = 42, actor: str = "admin", advance: Callable[[], object] | None = None
) -> dict:
    """Fill an empty studio: 4 teachers, ~60 slots, 2 semesters with closures, 3 plans, 20
    families, 30 students, 24 enrollments of the running semester (offline, active) and the
    attendance of its past lessons. Every row goes through the admin's audited operations;
    flushes, never commits. Conflict when the studio already has teachers. `advance` is
    called after each of `DEMO_STAGES`. Returns the counts of what was made."""
    ensure_studio_empty(session)
    step = advance or (lambda: None)
    rng = random.Random(seed)
    currency = get_settings().CURRENCY
    teachers = _teachers_and_slots(session, actor=actor)
    step()
    semesters = [
        terms.add_semester(
            session,
            name=name,
            starts_on=starts,
            ends_on=ends,
            makeup_starts_on=starts,
            makeup_ends_on=makeup_ends,
            closures=closures,
            actor=actor,
        )
        for name, starts, ends, makeup_ends, closures in demo_semesters(today)
    ]
    step()
    plans = [
        billing.add_plan(session, name="Weekly lessons", frequency="weekly", amount_cents=3500, currency=currency, actor=actor),
        billing.add_plan(
            session, name="Monthly lessons", frequency="monthly", amount_cents=13000, currency=currency, actor=actor
        ),
        billing.add_plan(
            session, name="Semester (per lesson)", frequency="semester", amount_cents=3200, currency=currency, actor=actor
        ),
    ]
    step()
    students = _families(session, rng, actor=actor)
    step()
    # Enrollments: 24 of 30 students hold a slot in the running semester. The slots in id
    # order before the shuffle: the same seed gives the same studio on either engine.
    running = semesters[0] if semesters[0].starts_on <= today <= semesters[0].ends_on else None
    slots = list(
        session.exec(select(scheduling.Timeslot.id, scheduling.Timeslot.teacher_id).order_by(scheduling.Timeslot.id)).all()
    )
    rng.shuffle(slots)
    enrollments = []
    for student, (timeslot_id, teacher_id) in zip(students[:24], slots, strict=False):
        instrument = rng.choice(people.teacher_instruments(session, teacher_id))
        try:
            enrollment = booking.assign_enrollment(
                session,
                student_id=student.id,
                timeslot_id=timeslot_id,
                instrument=instrument,
                plan=rng.choice(plans).id,
                offline=True,
                actor=actor,
                now=utcnow() - timedelta(days=(today - running.starts_on).days) if running else None,
            )
        except DomainError:
            continue
        enrollments.append(enrollment)
    step()
    # Attendance for the lessons already past: mostly present, a few excused / no-shows.
    marked = 0
    if running:
        for enrollment in enrollments:
            for day in lesson_dates(session, enrollment, last=today - timedelta(days=1)):
                status = rng.choices(_SEEDED_MARKS, (90, 5, 3, 2))[0]
                if status != attendance_ops.PRESENT and day < today - timedelta(days=21):
                    status = attendance_ops.PRESENT  # keep the demo's make-up list short and recent
                attendance_ops.mark_attendance(session, enrollment_id=enrollment.id, lesson_date=day, status=status, actor=actor)
                marked += 1
    step()
    return {
        "teachers": len(teachers),
        "slots": len(slots),
        "semesters": len(semesters),
        "plans": len(plans),
        "families": len(FAMILY_NAMES),
        "students": len(students),
        "enrollments": len(enrollments),
        "attendance_marks": marked,
    }
