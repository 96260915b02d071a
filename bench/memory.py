"""Memory of an API worker under a long run: RSS after 5,000 and after 10,000 requests.

gunicorn (2 workers, gthread) on a fresh PostgreSQL database with 20 teachers × 24 slots,
half booked. Four keep-alive clients cycle through a mix of what parents do: the free-slot
listing, teachers, their students and bookings (signed in), a booking attempt on a taken
slot (409 problem+json) and `/healthz`. The resident set of each worker is read from
/proc after the warm-up, after 5,000 and after 10,000 requests.

- largest worker RSS after 10,000 requests          (target ≤ 120 MB)
- its growth between the 5,000th and 10,000th       (target: none; ≤ 2 MB of allocator noise)

    python -m bench.memory [--requests 10000]
"""

from __future__ import annotations

import argparse
import json

from bench.common import (
    Figure,
    api_server,
    bench_env,
    bound_figure,
    exchange_tokens,
    flush_queue,
    http_load,
    print_figures,
    rss_mb,
    seed_studio,
    sql,
)
from tests.support.databases import fresh_pg_database

BENCH = "memory"


def run(*, requests: int = 10_000, concurrency: int = 4) -> list[Figure]:
    """Load the API in two halves, reading worker RSS between; the figures of this benchmark."""
    with fresh_pg_database("bench_memory") as url:
        studio = seed_studio(url, teachers=20, slots_per_teacher=24, payees=8)
        sql(
            url,
            """
            INSERT INTO enrollment (student_id, timeslot_id, instrument_id, plan_id, status, offline, start_date,
                                    created_at, updated_at)
            SELECT (SELECT min(id) FROM student), t.id, %s, %s, 'active', false, current_date, now(), now()
            FROM timeslot t WHERE t.id %% 2 = 0
        """,
            (studio.instrument_id, studio.plan_id),
        )
        taken_slot = sql(url, "SELECT min(timeslot_id) FROM enrollment")[0][0]
        env = bench_env(url)
        try:
            with api_server(env, name="memory") as server:
                tokens = exchange_tokens(server.url, [sub for sub, _, _ in studio.payees])
                mix = []
                for sub, _, student_id in studio.payees:
                    auth = {"Authorization": "Bearer " + tokens[sub]}
                    booking = json.dumps(
                        {"student_id": student_id, "timeslot_id": taken_slot, "instrument": "piano", "plan": "monthly"}
                    ).encode()
                    mix += [
                        ("GET", "/public/timeslots?available=true", None, {}),
                        ("GET", "/public/teachers", None, {}),
                        ("GET", "/parent/students", None, auth),
                        ("GET", "/parent/bookings", None, auth),
                        ("POST", "/parent/bookings", booking, {**auth, "Content-Type": "application/json"}),
                        ("GET", "/healthz", None, {}),
                    ]
                http_load(server.url, mix, total=500, concurrency=concurrency)  # warm-up
                pids = server.worker_pids()
                warm = {pid: rss_mb(pid) for pid in pids}
                first = http_load(server.url, mix, total=requests // 2, concurrency=concurrency)
                middle = {pid: rss_mb(pid) for pid in pids}
                second = http_load(server.url, mix, total=requests - requests // 2, concurrency=concurrency)
                end = {pid: rss_mb(pid) for pid in pids}
                if server.worker_pids() != pids:
                    raise RuntimeError("a gunicorn worker was restarted during the run")
        finally:
            flush_queue(env)
    statuses: dict[int, int] = {}
    for result in (first, second):
        for status, count in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    unexpected = sum(count for status, count in statuses.items() if status not in (200, 409))
    growth = max(end[pid] - middle[pid] for pid in pids)
    per_worker = "; ".join(
        f"worker {n}: {warm[pid]:.1f} → {middle[pid]:.1f} → {end[pid]:.1f} MB" for n, pid in enumerate(pids, 1)
    )
    return [
        bound_figure(
            BENCH,
            f"worker RSS after {requests:,} requests",
            max(end.values()),
            "MB",
            at_most=120,
            note=f"warm-up, {requests // 2:,}th, {requests:,}th request: {per_worker}",
        ),
        bound_figure(
            BENCH,
            f"RSS growth {requests // 2:,}th → {requests:,}th",
            growth,
            "MB",
            at_most=2.0,
            note="target: no growth (2 MB allowed for allocator noise)",
        ),
        bound_figure(
            BENCH,
            "unexpected answers / socket errors",
            unexpected + first.errors + second.errors,
            "",
            at_most=0,
            note=f"statuses {statuses}; {(first.rps + second.rps) / 2:.0f} req/s",
        ),
    ]


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    print_figures("bench.memory", run(requests=args.requests))


if __name__ == "__main__":
    main()
