"""A large independent school (issue 15, item 6): the admin's and the families' reads at size.

Two fresh PostgreSQL databases are seeded in plain SQL: the target size — 2,000 students of
1,400 families, 60 teachers, 5 locations with 4 rooms each, 2,500 weekly lessons (500 students
take two instruments) and a semester of attendance up to today (every mark the payroll knows:
present, no_show, late_cancel, excused, teacher_cancelled; 1 in 25 lessons taught by a
substitute) — and a tenth of it. For each read the read model runs in this process, warmed
once, its answer serialised to JSON, while a `before_cursor_execute` event records its
statements:

- statements at the target size = statements at a tenth of it  (a constant number of queries)
- its time ÷ the same statements run by psql                   (target ≤ 2.0)

The reads: `payroll` for the last full month, `term-preview` for all families, `dashboard
today`, and `/public/timeslots?available=true&location=` (one location's first page).

    python -m bench.school [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import date, timedelta

from bench.common import (
    Figure,
    MissingTool,
    bound_figure,
    print_figures,
    ratio_figure,
    require_tool,
    restore_environ,
    skipped,
    sql,
)
from bench.dashboard import _psql_seconds, time_reads
from tests.support.databases import fresh_pg_database

BENCH = "school"
TARGET = {"teachers": 60, "families": 1400, "students": 2000, "lessons": 2500, "locations": 5}
WEEKS_BEFORE, WEEKS_AFTER = 12, 6


def seed_school(url: str, *, scale: float = 1.0) -> dict:
    """Seed the school at `scale` of the target size; returns the facts the reads need."""
    size = {key: max(1, round(value * scale)) for key, value in TARGET.items()}
    size["locations"] = TARGET["locations"]
    today = date.today()
    monday = today - timedelta(days=today.weekday())
    starts, ends = monday - timedelta(weeks=WEEKS_BEFORE), monday + timedelta(weeks=WEEKS_AFTER, days=5)
    sql(url, "INSERT INTO instrument (name) VALUES ('piano'), ('guitar'), ('violin'), ('drums')")
    sql(
        url,
        "INSERT INTO plan (name, frequency, amount_cents, currency, active, created_at) VALUES "
        "('monthly plan', 'monthly', 12000, 'usd', true, now()), ('weekly plan', 'weekly', 3200, 'usd', true, now())",
    )
    sql(
        url,
        "INSERT INTO semester (name, starts_on, ends_on, makeup_starts_on, makeup_ends_on, created_at) "
        "VALUES ('School term', %s, %s, %s, %s, now())",
        (starts, ends, starts, ends + timedelta(days=14)),
    )
    sql(url, "INSERT INTO semester_closure (semester_id, closed_on) SELECT id, %s FROM semester", (starts + timedelta(weeks=5),))
    sql(
        url,
        "INSERT INTO teacher (name, email, active, rate_cents, created_at) "
        "SELECT 'Teacher ' || n, 'teacher' || n || '@school.test', true, 2500 + 100 * (n %% 5), now() "
        "FROM generate_series(1, %s) AS n",
        (size["teachers"],),
    )
    sql(
        url, "INSERT INTO teacher_instrument (teacher_id, instrument_id) SELECT t.id, i.id FROM teacher t CROSS JOIN instrument i"
    )
    sql(
        url,
        "INSERT INTO location (name, created_at) SELECT 'Location ' || n, now() FROM generate_series(1, %s) AS n",
        (size["locations"],),
    )
    sql(
        url,
        "INSERT INTO room (location_id, name, created_at) "
        "SELECT l.id, 'Room ' || r, now() FROM location l CROSS JOIN generate_series(1, 4) AS r",
    )
    # Slots: each teacher works Monday–Saturday from 14:00; 1 slot in 20 is left free.
    per_teacher = -(-size["lessons"] * 21 // 20 // size["teachers"])
    sql(
        url,
        "INSERT INTO timeslot (teacher_id, weekday, start_minute, active, created_at) "
        "SELECT t.id, k %% 6, 840 + (k / 6) * 30, true, now() "
        "FROM teacher t CROSS JOIN generate_series(0, %s - 1) AS k ORDER BY t.id, k",
        (per_teacher,),
    )
    # A teacher keeps to one room; 60 teachers over 20 rooms never share a room at one time
    # because each room's three teachers get disjoint weekdays (two days each).
    sql(
        url,
        """
        WITH r AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n, count(*) OVER () AS total FROM room),
             t AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM teacher)
        UPDATE timeslot s SET room_id = r.id
        FROM t JOIN r ON r.n = t.n % r.total
        WHERE s.teacher_id = t.id AND s.weekday / 2 = (t.n / r.total) % 3
        """,
    )
    sql(
        url,
        "INSERT INTO payee (supabase_user_id, email, name, calendar_token, created_at, updated_at) "
        "SELECT 'school-user-' || n, 'parent' || n || '@school.test', 'Family ' || n, md5(random()::text || n), now(), now() "
        "FROM generate_series(1, %s) AS n",
        (size["families"],),
    )
    sql(
        url,
        "INSERT INTO student (payee_id, name, created_at) "
        "SELECT p.id, 'Student ' || n, now() FROM generate_series(1, %s) AS n "
        "JOIN payee p ON p.id = (SELECT min(id) FROM payee) + (n - 1) %% %s",
        (size["students"], size["families"]),
    )
    # Lessons: slot k (in teacher-spread order) to student k, then the first students again
    # for their second instrument; a monthly or weekly plan; 1 in 50 provisional.
    sql(
        url,
        """
        WITH s AS (SELECT id, row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS total FROM student),
             t AS (SELECT id, weekday, row_number() OVER (ORDER BY start_minute, weekday, teacher_id) AS n FROM timeslot),
             i AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM instrument),
             p AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM plan)
        INSERT INTO enrollment (student_id, timeslot_id, instrument_id, plan_id, semester_id, status, offline,
                                provisional_expires_at, start_date, created_at, updated_at)
        SELECT s.id, t.id, i.id, p.id, (SELECT id FROM semester), CASE WHEN t.n %% 50 = 0 THEN 'provisional' ELSE 'active' END,
               false, CASE WHEN t.n %% 50 = 0 THEN now() + interval '20 minutes' END, %s::date + t.weekday, now(), now()
        FROM t
        JOIN s ON s.n = 1 + (t.n - 1) %% s.total
        JOIN i ON i.n = 1 + ((t.n - 1) / s.total + t.n) %% 4
        JOIN p ON p.n = 1 + t.n %% 2
        WHERE t.n <= %s
        """,
        (starts, size["lessons"]),
    )
    # Attendance of every active enrollment's lessons before today (the closure has none).
    sql(
        url,
        """
        INSERT INTO attendance (enrollment_id, lesson_date, status, taught_by_id, marked_at)
        SELECT e.id, e.start_date + 7 * w,
               (ARRAY['present', 'present', 'present', 'present', 'no_show', 'late_cancel', 'excused',
                      'teacher_cancelled', 'present', 'present'])[1 + (e.id * 7 + w) %% 10],
               CASE WHEN (e.id + w) %% 25 = 0 THEN (SELECT min(id) FROM teacher) + (s.teacher_id %% %s) END,
               now()
        FROM enrollment e JOIN timeslot s ON s.id = e.timeslot_id
        CROSS JOIN generate_series(0, %s) AS w
        WHERE e.status = 'active' AND e.start_date + 7 * w < current_date AND e.start_date + 7 * w <> %s
        """,
        (size["teachers"], WEEKS_BEFORE, starts + timedelta(weeks=5)),
    )
    sql(
        url,
        "UPDATE attendance a SET taught_by_id = NULL FROM enrollment e JOIN timeslot s ON s.id = e.timeslot_id "
        "WHERE a.enrollment_id = e.id AND a.taught_by_id = s.teacher_id",
    )
    sql(url, "VACUUM ANALYZE")
    counts = sql(
        url,
        "SELECT (SELECT count(*) FROM student), (SELECT count(*) FROM payee), (SELECT count(*) FROM teacher), "
        "(SELECT count(*) FROM enrollment), (SELECT count(*) FROM attendance)",
    )[0]
    location = sql(url, "SELECT min(id) FROM location")[0][0]
    return {"today": today, "counts": counts, "location_id": location}


def _reads(facts: dict) -> dict[str, Callable]:
    """The reads measured, by figure name: each takes a session and returns a JSON-able answer."""
    from sqlmodel import select

    from models.dashboard import day_schedule
    from models.discovery import list_timeslots
    from models.payroll import payroll
    from models.scheduling import Semester
    from models.term_preview import term_preview

    today = facts["today"]
    month_end = today.replace(day=1) - timedelta(days=1)
    month_start = month_end.replace(day=1)
    reads: dict[str, Callable] = {
        f"payroll {month_start:%Y-%m}": lambda session: payroll(session, first=month_start, last=month_end)
    }

    def preview(session):
        semester = session.exec(select(Semester)).one()
        return term_preview(session, semester)

    reads["term-preview, all families"] = preview
    reads["dashboard today"] = lambda session: day_schedule(session, today)
    from models.config import get_settings

    location = str(facts["location_id"])
    reads["/public/timeslots?available=true&location="] = lambda session: list_timeslots(
        session, tz=get_settings().tz, available=True, location=location
    )
    return reads


def _measure(url: str, facts: dict, repeat: int) -> dict[str, tuple[float, list[str], int]]:
    """Per read: (median seconds, the statements of one run with parameters inlined, JSON bytes)."""
    from models.config import reset_settings
    from models.db import dispose_engines, get_engine

    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    reset_settings()
    try:
        return time_reads(get_engine(url), _reads(facts), repeat)
    finally:
        dispose_engines()
        restore_environ({"DATABASE_URL": saved})
        reset_settings()


def run(*, repeat: int = 3) -> list[Figure]:
    """Seed both sizes, then measure each read; the figures of this benchmark."""
    try:
        psql, missing = require_tool("psql", "postgresql-client"), None
    except MissingTool as error:
        psql, missing = None, error
    with fresh_pg_database("bench_school_small") as small_url:
        small = _measure(small_url, seed_school(small_url, scale=0.1), 1)
    figures: list[Figure] = []
    untimed: list[str] = []
    with fresh_pg_database("bench_school") as url:
        facts = seed_school(url)
        big = _measure(url, facts, repeat)
        for name, (seconds, statements, size) in big.items():
            figures.append(
                bound_figure(
                    BENCH,
                    f"{name}: SQL statements",
                    len(statements),
                    "",
                    at_most=len(small[name][1]),
                    note=f"{len(small[name][1])} at a tenth of the size; {size:,} bytes of JSON",
                )
            )
            if psql is None:
                untimed.append(f"{name}: time")
                continue
            script = "BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;\n"
            figures.append(
                ratio_figure(
                    BENCH,
                    f"{name}: time",
                    seconds * 1000,
                    "ms",
                    baseline_name="same SQL in psql",
                    baseline=_psql_seconds(psql, url, script, repeat) * 1000,
                    at_most=2.0,
                )
            )
    if untimed:
        figures += skipped(BENCH, untimed, missing)
    students, families, teachers, enrollments, attendance = facts["counts"]
    figures[0].note = (
        f"{students:,} students, {families:,} families, {teachers} teachers, {enrollments:,} weekly lessons, "
        f"{attendance:,} attendance rows; " + figures[0].note
    )
    return figures


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_figures("bench.school", run(repeat=args.repeat))


if __name__ == "__main__":
    main()
