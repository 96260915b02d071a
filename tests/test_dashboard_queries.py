"""The admin's views cost a constant number of SQL queries, however big the studio is."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, date, datetime

import sqlalchemy as sa

from models.attendance import mark_attendance
from models.booking import assign_enrollment
from models.dashboard import day_schedule, provisional_holds
from models.db import session_scope
from models.term_preview import term_preview
from tests import factories


@contextmanager
def count_queries(connection):
    statements = []

    def before(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN")):
            statements.append(statement)

    sa.event.listen(connection, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(connection, "before_cursor_execute", before)


def _studio(session, size):
    semester = factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), closures=[date(2026, 11, 30)])
    teacher = factories.teacher(session)
    ids = []
    for hour in range(size):
        slot = factories.timeslot(session, teacher_row=teacher, weekday=0, start=f"{8 + hour}:00")
        ids.append((slot.id, factories.student(session).id))
    session.commit()
    with session_scope() as unit:
        for slot_id, student_id in ids:
            enrollment = assign_enrollment(
                unit,
                student_id=student_id,
                timeslot_id=slot_id,
                instrument="piano",
                plan=None,
                offline=True,
                actor="admin",
                now=datetime(2026, 9, 1, tzinfo=UTC),
            )
            mark_attendance(unit, enrollment_id=enrollment.id, lesson_date=date(2026, 11, 23), status="present", actor="admin")
    return semester


def _queries(db, session, run):
    with count_queries(db) as statements:
        run()
    return len(statements)


def test_day_schedule_and_term_preview_queries_do_not_grow_with_the_studio(db, session):
    semester = _studio(session, 2)
    small = (
        _queries(db, session, lambda: day_schedule(session, date(2026, 11, 23))),
        _queries(db, session, lambda: term_preview(session, semester)),
        _queries(db, session, lambda: provisional_holds(session)),
    )
    session.expunge_all()
    _studio_more = factories.teacher(session)
    for hour in range(8):
        slot = factories.timeslot(session, teacher_row=_studio_more, weekday=0, start=f"{8 + hour}:30")
        student = factories.student(session)
        session.commit()
        with session_scope() as unit:
            assign_enrollment(
                unit,
                student_id=student.id,
                timeslot_id=slot.id,
                instrument="piano",
                plan=None,
                offline=True,
                actor="admin",
                now=datetime(2026, 9, 1, tzinfo=UTC),
            )
    session.expunge_all()
    schedule = day_schedule(session, date(2026, 11, 23))
    assert len(schedule["lessons"]) == 10
    large = (
        _queries(db, session, lambda: day_schedule(session, date(2026, 11, 23))),
        _queries(db, session, lambda: term_preview(session, semester)),
        _queries(db, session, lambda: provisional_holds(session)),
    )
    assert large == small
    assert max(large) <= 5


def test_light_table_handles_match_the_schema():
    """`models.light` names tables and columns by hand for the fast read paths: each one
    must exist in the real schema with a compatible type, and the statuses spelled out for the
    light path must be the enrollment and make-up modules' own."""
    from models import dashboard, light
    from models.attendance import TAKEN_STATUSES
    from models.enrollment import TAUGHT_STATUSES
    from models.tables import metadata

    for handle in light.TABLES:
        real = metadata.tables[handle.name]
        for column in handle.c:
            assert column.name in real.c, f"{handle.name}.{column.name} is not a column"
            assert column.type._type_affinity is real.c[column.name].type._type_affinity, f"{handle.name}.{column.name}"
    assert dashboard._TAUGHT == TAUGHT_STATUSES
    assert dashboard._TAKEN == TAKEN_STATUSES


def test_dashboard_today_does_not_import_the_table_classes():
    """`studioctl dashboard today` stays cheap to start: the day schedule needs no SQLModel table class."""
    import subprocess
    import sys

    code = (
        "import sys, models.dashboard; "
        "print(sorted(m for m in ('models.enrollment', 'models.attendance', 'models.people', 'models.scheduling') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
