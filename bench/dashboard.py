"""The admin dashboards on a big studio: SQL statements per command, and time against psql.

A fresh PostgreSQL database gets 5,000 enrollments (one per slot: 100 teachers × 50 slots,
mostly active, some provisional and past due) and 150,000 attendance rows (30 weekly
lessons each). For each `studioctl dashboard` command (today, provisionals, payments) the
read model it calls runs in this process, warmed once, its result serialised to JSON as
`--json` does, while a `before_cursor_execute` event counts and records its statements
(with their parameters inlined).

- statements per command                     (target ≤ 5)
- its time ÷ the same statements run by psql  (target ≤ 2.0), psql's side being the sum of
  its `\\timing` lines: the queries' cost without psql's start-up or printing.

    python -m bench.dashboard [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
from datetime import date, timedelta

from bench.common import (
    Figure,
    MissingTool,
    bound_figure,
    libpq_url,
    print_figures,
    ratio_figure,
    require_tool,
    restore_environ,
    seed_studio,
    skipped,
    sql,
    work_dir,
)
from tests.support.databases import fresh_pg_database

BENCH = "dashboard"
TEACHERS, SLOTS_PER_TEACHER, WEEKS = 100, 50, 30


def seed_big_studio(url: str) -> date:
    """5,000 enrollments and 150,000 attendance rows; the Tuesday the `today` board shows."""
    seed_studio(url, teachers=TEACHERS, slots_per_teacher=SLOTS_PER_TEACHER, payees=2500, semester=False)
    today = date.today()
    board_day = today - timedelta(days=(today.weekday() - 1) % 7)  # the latest Tuesday (weekday 1)
    first_monday = board_day - timedelta(days=board_day.weekday() + 7 * (WEEKS - 1))
    sql(
        url,
        "INSERT INTO semester (name, starts_on, ends_on, makeup_starts_on, makeup_ends_on, created_at) "
        "VALUES ('Big term', %s, %s, %s, %s, now())",
        (first_monday, board_day + timedelta(days=70), first_monday, board_day + timedelta(days=90)),
    )
    sql(url, "INSERT INTO student (payee_id, name, created_at) SELECT id, 'Sibling of ' || name, now() FROM payee")
    # Slot n goes to student n; 1 in 20 is a provisional hold, 1 in 20 past due, the rest active.
    sql(
        url,
        """
        WITH s AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM student),
             t AS (SELECT id, weekday, row_number() OVER (ORDER BY id) AS n FROM timeslot)
        INSERT INTO enrollment (student_id, timeslot_id, instrument_id, plan_id, semester_id, status, offline,
                                provisional_expires_at, start_date, past_due_since, created_at, updated_at)
        SELECT s.id, t.id, (SELECT id FROM instrument LIMIT 1), (SELECT id FROM plan LIMIT 1),
               (SELECT id FROM semester WHERE name = 'Big term'),
               CASE WHEN t.n %% 20 = 0 THEN 'provisional' WHEN t.n %% 20 = 1 THEN 'past_due' ELSE 'active' END,
               false,
               CASE WHEN t.n %% 20 = 0 THEN now() + interval '20 minutes' END,
               %s::date + t.weekday,
               CASE WHEN t.n %% 20 = 1 THEN now() - interval '2 days' END,
               now() - interval '200 days', now() - (t.n %% 9) * interval '1 day'
        FROM t JOIN s ON s.n = t.n
    """,
        (first_monday,),
    )
    sql(
        url,
        """
        INSERT INTO attendance (enrollment_id, lesson_date, status, marked_at)
        SELECT e.id, e.start_date + 7 * w,
               (ARRAY['present', 'present', 'present', 'excused', 'no_show'])[1 + (e.id + w) %% 5], now()
        FROM enrollment e CROSS JOIN generate_series(0, %s - 1) AS w
    """,
        (WEEKS,),
    )
    sql(url, "VACUUM ANALYZE")
    return board_day


def _commands(board_day: date):
    from models.dashboard import day_schedule, payment_activity, provisional_holds

    return {
        "dashboard today": lambda session: day_schedule(session, board_day),
        "dashboard provisionals": lambda session: provisional_holds(session),
        "dashboard payments": lambda session: payment_activity(session),
    }


def _psql_seconds(psql: str, url: str, script: str, repeat: int) -> float:
    """Median over `repeat` psql runs of the summed `\\timing` of the statements of `script`
    (send to last row received: neither psql's start-up nor its printing counts)."""
    path = work_dir("dashboard") / "statements.sql"
    path.write_text("\\timing on\n" + script)
    argv = [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f", str(path), libpq_url(url)]
    totals = []
    for _ in range(repeat + 1):
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)
        totals.append(sum(float(match) for match in re.findall(r"^Time: ([\d.]+) ms", done.stdout, re.M)) / 1000)
    return statistics.median(totals[1:])


def time_reads(engine, reads: dict, repeat: int) -> dict[str, tuple[float, list[str], int]]:
    """Per read (a function of a read-only session returning a JSON-able answer), warmed once:
    (median seconds over `repeat` runs of the read and its JSON, the statements of one run with
    their parameters inlined, the JSON's size in bytes)."""
    import psycopg
    from sqlalchemy import event

    from models.db import session_scope

    results = {}
    for name, read in reads.items():
        with session_scope(write=False) as session:  # warm-up: imports, pool, statement cache
            json.dumps(read(session), default=str)
        recorded: list[str] = []

        def record(_conn, cursor, statement, params, _context, _many, recorded=recorded):
            recorded.append(psycopg.ClientCursor(cursor.connection).mogrify(statement, params))

        times = []
        for attempt in range(repeat):
            if attempt == 0:
                event.listen(engine, "before_cursor_execute", record)
            started = time.perf_counter()
            with session_scope(write=False) as session:
                output = json.dumps(read(session), default=str)
            times.append(time.perf_counter() - started)
            if attempt == 0:
                event.remove(engine, "before_cursor_execute", record)
        results[name] = (statistics.median(times), recorded, len(output))
    return results


def run(*, repeat: int = 3) -> list[Figure]:
    """Seed, then measure each dashboard command; the figures of this benchmark (without psql,
    only the statement counts)."""
    from models.config import reset_settings
    from models.db import get_engine

    try:
        psql, missing = require_tool("psql", "postgresql-client"), None
    except MissingTool as error:
        psql, missing = None, error
    figures: list[Figure] = []
    untimed: list[str] = []
    with fresh_pg_database("bench_dashboard") as url:
        board_day = seed_big_studio(url)
        counts = sql(url, "SELECT (SELECT count(*) FROM enrollment), (SELECT count(*) FROM attendance)")[0]
        saved = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        reset_settings()
        try:
            measured = time_reads(get_engine(url), _commands(board_day), repeat)
            for name, (app_seconds, recorded, size) in measured.items():
                figures.append(
                    bound_figure(BENCH, f"{name}: SQL statements", len(recorded), "", at_most=5, note=f"{size:,} bytes of JSON")
                )
                if psql is None:
                    untimed.append(f"{name}: time")
                    continue
                script = "BEGIN;\n" + ";\n".join(recorded) + ";\nCOMMIT;\n"
                psql_seconds = _psql_seconds(psql, url, script, repeat)
                figures.append(
                    ratio_figure(
                        BENCH,
                        f"{name}: time",
                        app_seconds * 1000,
                        "ms",
                        baseline_name="same SQL in psql",
                        baseline=psql_seconds * 1000,
                        at_most=2.0,
                    )
                )
        finally:
            restore_environ({"DATABASE_URL": saved})
    if untimed:
        figures += skipped(BENCH, untimed, missing)
    figures[0].note = f"{counts[0]:,} enrollments, {counts[1]:,} attendance rows; board day {board_day}; " + figures[0].note
    return figures


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_figures("bench.dashboard", run(repeat=args.repeat))


if __name__ == "__main__":
    main()
