"""Discovery under load: `GET /public/timeslots?available=true` against `/healthz`, same server.

200 teachers × 60 weekly slots (12,000), every other slot held by an active enrollment,
served by gunicorn (2 workers, gthread) on a fresh PostgreSQL database. `wrk` measures the
free-slot listing (first page, 50 rows) and then `/healthz` (a `SELECT 1`): the ratio
says what discovery costs above a bare request (target ≥ 0.5).

The SQL statements per request are counted in-process (`before_cursor_execute`) for pages
of 10 and of 100 slots, and for a later page: the count must not grow with the page.

    python -m bench.discovery [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import argparse

from bench.common import (
    Figure,
    MissingTool,
    QueryCounter,
    api_server,
    bench_env,
    bound_figure,
    flush_queue,
    in_process_app,
    print_figures,
    ratio_figure,
    require_tool,
    seed_studio,
    skipped,
    sql,
    wrk,
)
from tests.support.databases import fresh_pg_database

BENCH = "discovery"
TEACHERS, SLOTS_PER_TEACHER = 200, 60
LISTING = "/public/timeslots?available=true"
LISTING_FIGURE, ERRORS_FIGURE = "GET /public/timeslots?available=true", "non-200 answers / socket errors"


def seed_half_booked(url: str) -> int:
    """12,000 slots, every other one taken by an active enrollment; returns the slot count."""
    studio = seed_studio(url, teachers=TEACHERS, slots_per_teacher=SLOTS_PER_TEACHER, payees=100)
    sql(
        url,
        """
        INSERT INTO enrollment (student_id, timeslot_id, instrument_id, plan_id, status, offline, start_date,
                                created_at, updated_at)
        SELECT (SELECT min(id) FROM student) + (t.id %% 100), t.id, %s, %s, 'active', false, current_date, now(), now()
        FROM timeslot t WHERE t.id %% 2 = 0
    """,
        (studio.instrument_id, studio.plan_id),
    )
    sql(url, "VACUUM ANALYZE")
    return len(studio.slot_ids)


def statements_per_request(env: dict[str, str]) -> dict[str, int]:
    """SQL statements sent for one listing request of each page shape."""
    from models.db import get_engine

    counts = {}
    with in_process_app(env) as app:
        client = app.test_client()
        client.get(LISTING + "&limit=5")  # warm-up
        first = client.get(LISTING + "&limit=100").get_json()
        for name, path in (
            ("10 slots", LISTING + "&limit=10"),
            ("100 slots", LISTING + "&limit=100"),
            ("page 2 of 100", LISTING + f"&limit=100&cursor={first['next_cursor']}"),
        ):
            with QueryCounter(get_engine()) as counter:
                response = client.get(path)
            assert response.status_code == 200, response.get_data(as_text=True)
            counts[name] = counter.count
    return counts


def run(*, seconds: int = 5, connections: int = 16) -> list[Figure]:
    """Measure discovery and its baseline; the figures of this benchmark (without wrk, only the
    statement count)."""
    try:
        require_tool("wrk")
        missing = None
    except MissingTool as error:
        missing = error
    with fresh_pg_database("bench_discovery") as url:
        slots = seed_half_booked(url)
        env = bench_env(url)
        counts = statements_per_request(env)
        if missing is None:
            try:
                with api_server(env, name="discovery") as server:
                    wrk(server.url + LISTING, seconds=1, connections=connections, name="warm")
                    listing = wrk(server.url + LISTING, seconds=seconds, connections=connections, name="listing")
                    health = wrk(server.url + "/healthz", seconds=seconds, connections=connections, name="healthz")
            finally:
                flush_queue(env)
    statements = bound_figure(
        BENCH,
        "SQL statements per listing request",
        max(counts.values()),
        "",
        at_most=min(counts.values()),
        note=", ".join(f"{k}: {v}" for k, v in counts.items()) + " (target: the same for every page size)",
    )
    if missing is not None:
        return [statements, *skipped(BENCH, (LISTING_FIGURE, ERRORS_FIGURE), missing)]
    bad = sum(count for status, count in listing.statuses.items() if status != 200) + listing.errors
    return [
        ratio_figure(
            BENCH,
            LISTING_FIGURE,
            listing.rps,
            "req/s",
            baseline_name="/healthz",
            baseline=health.rps,
            at_least=0.5,
            note=f"{slots:,} slots, half booked; 50 per page; wrk {connections} connections, {seconds} s; "
            f"p50 {listing.p50_ms:.1f} ms, p99 {listing.p99_ms:.1f} ms (healthz p99 {health.p99_ms:.1f} ms)",
        ),
        statements,
        bound_figure(BENCH, ERRORS_FIGURE, bad, "", at_most=0),
    ]


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print_figures("bench.discovery", run(seconds=args.seconds, connections=args.connections))


if __name__ == "__main__":
    main()
