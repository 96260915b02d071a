"""`studioctl seed`: the standard instruments, and a believable demo studio."""

from __future__ import annotations

import typer

from studioctl.common import console

app = typer.Typer(help="Seed data. Example: studioctl seed demo", no_args_is_help=True)

DEMO_TEACHERS = (
    ("Ada Lovelace", "ada@studio.example", ["piano"], (0, 2), "15:00", "17:30"),
    ("Jimi Page", "jimi@studio.example", ["guitar", "bass"], (1, 3), "15:30", "18:00"),
    ("Sheila Moon", "sheila@studio.example", ["drums"], (0, 4), "16:00", "18:30"),
    ("Clara Keys", "clara@studio.example", ["piano", "guitar"], (2, 5), "14:00", "16:30"),
)
FAMILY_NAMES = (
    "Garcia", "Smith", "Nguyen", "Okafor", "Rossi", "Kim", "Haddad", "Larsen", "Silva", "Cohen",
    "Murphy", "Patel", "Dubois", "Novak", "Tanaka", "Walker", "Ibrahim", "Fischer", "Lopez", "Moreau",
)
FIRST_NAMES = (
    "Mia", "Leo", "Ava", "Noah", "Zoe", "Eli", "Ivy", "Max", "Lila", "Sam", "Nora", "Finn", "Ruby", "Omar", "June",
    "Theo", "Iris", "Jude", "Esme", "Kai", "Rosa", "Ezra", "Maya", "Luca", "Ines", "Ben", "Cleo", "Dev", "Ella", "Gus",
)


@app.command()
def instruments() -> None:
    """Make sure piano, guitar, drums and bass exist (safe to run again).

    Example: studioctl seed instruments
    """
    from models.db import session_scope
    from models.people import seed_instruments

    with session_scope() as session:
        created = [instrument.name for instrument in seed_instruments(session, actor="admin")]
    console.print(f"[green]instruments seeded[/] ({', '.join(created) if created else 'all present already'})")


def _demo_semesters(today):
    """A running semester around `today` (with closures) and the next one."""
    from datetime import date, timedelta

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


@app.command()
def demo(
    seed: int = typer.Option(42, help="Random seed (the same seed gives the same studio)."),
    skip_if_seeded: bool = typer.Option(
        False, "--skip-if-seeded", help="Exit 0 without changes when the studio already has teachers."
    ),
) -> None:
    """Fill an empty database with a believable studio: 4 teachers, ~60 slots, 2 semesters
    with closures, 3 plans, 20 families, 30 students, enrollments and some attendance.

    Refuses (exit 1) when the studio already has teachers, unless --skip-if-seeded.

    Example: studioctl seed demo --skip-if-seeded
    """
    import random
    from datetime import timedelta

    from rich.progress import Progress
    from sqlmodel import select

    from models import attendance as attendance_ops
    from models import billing, enrollment as enrollment_ops, people, scheduling
    from models.base import utcnow
    from models.config import get_settings
    from models.db import session_scope
    from models.errors import Conflict, DomainError
    from models.people import Teacher

    rng = random.Random(seed)
    settings = get_settings()
    today = utcnow().astimezone(settings.tz).date()
    with session_scope() as session:
        if session.exec(select(Teacher.id)).first() is not None:
            if skip_if_seeded:
                console.print("[dim]the studio already has teachers; demo seed skipped[/]")
                return
            raise Conflict("the studio already has teachers; seed demo only fills an empty database")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("seeding the demo studio", total=7)
            people.seed_instruments(session, actor="admin")
            teachers = []
            for name, email, instruments, weekdays, start, end in DEMO_TEACHERS:
                teacher = people.add_teacher(
                    session, name=name, email=email, instruments=instruments,
                    bio=f"{name.split()[0]} teaches {' and '.join(instruments)}.", actor="admin",
                )
                teachers.append((teacher, instruments))
                for weekday in weekdays:
                    scheduling.publish_timeslots(
                        session, teacher=teacher, weekday=weekday, from_minute=scheduling.parse_hhmm(start),
                        to_minute=scheduling.parse_hhmm(end), actor="admin",
                    )
            # Top up to ~60 slots with a Saturday morning for everyone.
            for teacher, _ in teachers:
                scheduling.publish_timeslots(
                    session, teacher=teacher, weekday=5 if teacher.email != "clara@studio.example" else 6,
                    from_minute=9 * 60, to_minute=11 * 60, actor="admin",
                )
            progress.advance(task)
            semesters = [
                scheduling.add_semester(
                    session, name=name, starts_on=starts, ends_on=ends, makeup_starts_on=starts,
                    makeup_ends_on=makeup_ends, closures=closures, actor="admin",
                )
                for name, starts, ends, makeup_ends, closures in _demo_semesters(today)
            ]
            progress.advance(task)
            plans = [
                billing.add_plan(session, name="Weekly lessons", frequency="weekly", amount_cents=3500, currency=settings.CURRENCY, actor="admin"),
                billing.add_plan(session, name="Monthly lessons", frequency="monthly", amount_cents=13000, currency=settings.CURRENCY, actor="admin"),
                billing.add_plan(session, name="Semester (per lesson)", frequency="semester", amount_cents=3200, currency=settings.CURRENCY, actor="admin"),
            ]
            progress.advance(task)
            students = []
            for index, family in enumerate(FAMILY_NAMES):
                parent_first = rng.choice(("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Robin", "Jamie"))
                payee = people.add_payee(
                    session, name=f"{parent_first} {family}", email=f"{parent_first.lower()}.{family.lower()}@family.example",
                    phone=f"+1 555 01{index:02d}", actor="admin",
                )
                children = 2 if index < 10 else 1
                for child in range(children):
                    students.append(people.add_student(
                        session, payee=payee, name=f"{FIRST_NAMES[len(students) % len(FIRST_NAMES)]} {family}",
                        notes=rng.choice((None, "beginner", "second year", "prepping a recital")), actor="admin",
                    ))
            progress.advance(task)
            # Enrollments: 24 of 30 students hold a slot in the running semester.
            running = semesters[0] if semesters[0].starts_on <= today <= semesters[0].ends_on else None
            slots = list(session.exec(select(scheduling.Timeslot)).all())
            rng.shuffle(slots)
            enrollments = []
            for student, slot in zip(students[:24], slots):
                teacher = session.get(Teacher, slot.teacher_id)
                instrument = rng.choice(people.teacher_instruments(session, teacher.id))
                try:
                    enrollment = enrollment_ops.assign_enrollment(
                        session, student_id=student.id, timeslot_id=slot.id, instrument=instrument,
                        plan=rng.choice(plans).id, offline=True, actor="admin",
                        now=utcnow() - timedelta(days=(today - running.starts_on).days) if running else None,
                    )
                except DomainError:
                    continue
                enrollments.append(enrollment)
            progress.advance(task)
            # Attendance for the lessons already past: mostly present, a few excused / no-shows.
            marked = 0
            if running:
                for enrollment in enrollments:
                    for day in enrollment_ops.lesson_dates(session, enrollment, last=today - timedelta(days=1)):
                        status = rng.choices(("present", "excused", "no_show", "teacher_cancelled"), (90, 5, 3, 2))[0]
                        if status != "present" and day < today - timedelta(days=21):
                            status = "present"  # keep the demo's make-up list short and recent
                        attendance_ops.mark_attendance(
                            session, enrollment_id=enrollment.id, lesson_date=day, status=status, actor="admin",
                        )
                        marked += 1
            progress.advance(task)
            progress.advance(task)
        slot_count = len(slots)
    console.print(
        f"[green]demo studio seeded[/]: {len(teachers)} teachers, {slot_count} slots, {len(semesters)} semesters, "
        f"{len(FAMILY_NAMES)} families, {len(students)} students, {len(enrollments)} enrollments, {marked} attendance marks"
    )
