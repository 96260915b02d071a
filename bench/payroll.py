"""Payroll on a studio of 2,000 students: SQL statements, and time against psql.

A fresh PostgreSQL database gets 40 teachers × 50 weekly slots, 2,000 students with one
active enrollment each (slot n, student n) over a 20-week semester, and every lesson of the
semester up to last week marked (present, no_show, late_cancel, excused, teacher_cancelled in
turn; 1 in 10 substituted by the next teacher, with a time off row), this week's unmarked;
one used make-up per 20 students. `models.payroll.payroll` then answers for the last four
weeks (all teachers, then one teacher), its result serialised to JSON as `--json` does, while
a `before_cursor_execute` event counts and records its statements (parameters inlined).

- statements per report                         (target ≤ 7: a constant, whatever the size)
- its time ÷ the same statements run by psql     (context: the Python side builds the detail)

    python -m bench.payroll [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import date, timedelta

from bench.common import (
    Figure,
    MissingTool,
    bound_figure,
    print_figures,
    ratio_figure,
    require_tool,
    restore_environ,
    seed_studio,
    skipped,
    sql,
)
from bench.dashboard import _psql_seconds
from tests.support.databases import fresh_pg_database

BENCH = "payroll"
TEACHERS, SLOTS_PER_TEACHER, WEEKS = 40, 50, 20


def seed(url: str) -> tuple[date, date]:
    """2,000 enrollments, their marks up to last week; the four weeks the report covers."""
    seed_studio(url, teachers=TEACHERS, slots_per_teacher=SLOTS_PER_TEACHER, payees=TEACHERS * SLOTS_PER_TEACHER, semester=False)
    today = date.today()
    this_monday = today - timedelta(days=today.weekday())
    first_monday = this_monday - timedelta(weeks=WEEKS - 2)
    sql(url, "UPDATE teacher SET rate_cents = 2500 + 100 * (id % 5)")
    sql(
        url,
        "INSERT INTO semester (name, starts_on, ends_on, makeup_starts_on, makeup_ends_on, created_at) "
        "VALUES ('Payroll term', %s, %s, %s, %s, now())",
        (first_monday, first_monday + timedelta(weeks=WEEKS, days=-1), first_monday, first_monday + timedelta(weeks=WEEKS + 2)),
    )
    sql(
        url,
        """
        WITH s AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM student),
             t AS (SELECT id, weekday, row_number() OVER (ORDER BY id) AS n FROM timeslot)
        INSERT INTO enrollment (student_id, timeslot_id, instrument_id, semester_id, status, offline, start_date,
                                created_at, updated_at)
        SELECT s.id, t.id, (SELECT id FROM instrument LIMIT 1), (SELECT id FROM semester WHERE name = 'Payroll term'),
               'active', true, %s::date + t.weekday, now(), now()
        FROM t JOIN s ON s.n = t.n
        """,
        (first_monday,),
    )
    # Every lesson before this week marked; 1 in 10 taught by the next teacher.
    sql(
        url,
        """
        INSERT INTO attendance (enrollment_id, lesson_date, status, taught_by_id, marked_at)
        SELECT e.id, e.start_date + 7 * w,
               (ARRAY['present', 'present', 'no_show', 'late_cancel', 'excused', 'teacher_cancelled'])[1 + (e.id + w) %% 6],
               CASE WHEN (e.id + w) %% 10 = 0 THEN (SELECT min(id) FROM teacher WHERE id > t.teacher_id) END,
               now()
        FROM enrollment e JOIN timeslot t ON t.id = e.timeslot_id CROSS JOIN generate_series(0, %s - 1) AS w
        WHERE e.start_date + 7 * w < %s
        """,
        (WEEKS, this_monday),
    )
    sql(
        url,
        "INSERT INTO time_off (teacher_id, starts_on, ends_on, substitute_id, created_at) "
        "SELECT id, %s::date + 2, %s::date + 3, id + 1, now() FROM teacher WHERE id %% 4 = 0 AND id < (SELECT max(id) FROM teacher)",
        (this_monday, this_monday),
    )
    sql(
        url,
        """
        INSERT INTO makeup (student_id, status, timeslot_id, lesson_date, expires_on, created_at, updated_at)
        SELECT e.student_id, 'used', e.timeslot_id, %s::date - 7 + ((t.weekday + 1) %% 7), %s, now(), now()
        FROM enrollment e JOIN timeslot t ON t.id = e.timeslot_id WHERE e.id %% 20 = 0
        """,
        (this_monday, first_monday + timedelta(weeks=WEEKS + 2)),
    )
    sql(url, "VACUUM ANALYZE")
    return this_monday - timedelta(weeks=3), today


def run(*, repeat: int = 3) -> list[Figure]:
    """Seed, then measure the report for all teachers and for one."""
    import psycopg
    import sqlalchemy as sa
    from sqlalchemy import event

    from models.config import reset_settings
    from models.db import get_engine, session_scope
    from models.payroll import payroll
    from models.people import Teacher

    try:
        psql, missing = require_tool("psql", "postgresql-client"), None
    except MissingTool as error:
        psql, missing = None, error
    figures: list[Figure] = []
    untimed: list[str] = []
    with fresh_pg_database("bench_payroll") as url:
        first, last = seed(url)
        counts = sql(url, "SELECT (SELECT count(*) FROM student), (SELECT count(*) FROM attendance)")[0]
        saved = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        reset_settings()
        try:
            engine = get_engine(url)
            with session_scope(write=False) as session:
                one_id = session.execute(sa.select(Teacher.id).order_by(Teacher.id)).scalars().first()
            reports = {
                "all teachers": lambda session: payroll(session, first=first, last=last),
                "one teacher": lambda session: payroll(session, first=first, last=last, teacher=session.get(Teacher, one_id)),
            }
            for name, report in reports.items():
                with session_scope(write=False) as session:  # warm-up: imports, pool, statement cache
                    json.dumps(report(session))
                recorded: list[str] = []

                def record(_conn, cursor, statement, params, _context, _many, recorded=recorded):
                    recorded.append(psycopg.ClientCursor(cursor.connection).mogrify(statement, params))

                times = []
                for attempt in range(repeat):
                    if attempt == 0:
                        event.listen(engine, "before_cursor_execute", record)
                    started = time.perf_counter()
                    with session_scope(write=False) as session:
                        output = json.dumps(report(session))
                    times.append(time.perf_counter() - started)
                    if attempt == 0:
                        event.remove(engine, "before_cursor_execute", record)
                paid = sum(row["lessons_paid"] for row in json.loads(output)["teachers"])
                figures.append(
                    bound_figure(
                        BENCH,
                        f"payroll, {name}: SQL statements",
                        len(recorded),
                        "",
                        at_most=7,
                        note=f"{paid:,} lessons paid, {len(output):,} bytes of JSON",
                    )
                )
                if psql is None:
                    untimed.append(f"payroll, {name}: time")
                    continue
                script = "BEGIN;\n" + ";\n".join(recorded) + ";\nCOMMIT;\n"
                psql_seconds = _psql_seconds(psql, url, script, repeat)
                figures.append(
                    ratio_figure(
                        BENCH,
                        f"payroll, {name}: time",
                        statistics.median(times) * 1000,
                        "ms",
                        baseline_name="same SQL in psql",
                        baseline=psql_seconds * 1000,
                    )
                )
        finally:
            restore_environ({"DATABASE_URL": saved})
    if untimed:
        figures += skipped(BENCH, untimed, missing)
    figures[0].note = f"{counts[0]:,} students, {counts[1]:,} attendance rows; {first} to {last}; " + figures[0].note
    return figures


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_figures("bench.payroll", run(repeat=args.repeat))


if __name__ == "__main__":
    main()
