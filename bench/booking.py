"""Booking under contention: `POST /parent/bookings` on gunicorn vs the bare SQL in pgbench.

N clients walk the same list of slots in the same order, so every slot is attempted by
all N of them at nearly the same moment: one 202, N-1 409s (contested attempts). The API
runs as `studioctl serve` runs it (gunicorn, 2 workers, gthread) on a fresh PostgreSQL
database; every client signs in for real (Supabase HS256 token → `POST /auth/exchange`).

The baseline is the booking transaction alone, on the same schema and with the same walk
and concurrency, run by `pgbench`: lock the slot `FOR UPDATE`, look for a live enrollment,
insert a provisional one when the slot is free. Its rows are deleted before the API run.

A second baseline is `/healthz` served by the same gunicorn in the same run, with the same
connections: what the web stack costs before the booking does anything.

Figures: booking req/s ÷ healthz req/s (target ≥ 0.35), booking req/s ÷ pgbench TPS
(context), p50/p99 latency, 409s, contested attempts (≥ 1,000) and double bookings (0),
counted both from the answers and in the database.

    python -m bench.booking [--clients 8] [--seconds 15] [--threads 4]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from collections import Counter

from bench.common import (
    Figure,
    MissingTool,
    api_server,
    bench_env,
    bound_figure,
    exchange_tokens,
    flush_queue,
    libpq_url,
    lua_string,
    print_figures,
    ratio_figure,
    require_tool,
    seed_studio,
    skipped,
    sql,
    work_dir,
    wrk,
)
from tests.support.databases import fresh_pg_database
from tests.support.live import call

BENCH = "booking"
FIGURES = (
    "booking req/s (POST /parent/bookings)",
    "booking ÷ pgbench",
    "latency p50",
    "latency p99",
    "202 accepted",
    "409 conflicts",
    "contested attempts",
    "double bookings (answers + database)",
    "other answers / socket errors",
)
TEACHERS, SLOTS_PER_TEACHER = 200, 24  # 4,800 slots: no client walks past the end in a short run
PAYEES_PER_CLIENT = 4  # each client rotates over 4 families (the hold cap is per family)
LIVE = "('provisional', 'active', 'past_due')"

PGBENCH_SCRIPT = f"""
\\set k :k + 1
\\set slot :first_slot + ((:k - 1) % :nslots)
\\set student :first_student + (:client_id % :nstudents)
BEGIN;
SELECT id FROM timeslot WHERE id = :slot FOR UPDATE;
SELECT count(*) AS taken FROM enrollment WHERE timeslot_id = :slot AND status IN {LIVE} \\gset
\\if :taken = 0
INSERT INTO enrollment (student_id, timeslot_id, instrument_id, plan_id, status, offline, provisional_expires_at,
  start_date, pipeline_state, created_at, updated_at)
VALUES (:student, :slot, :instrument, :plan, 'provisional', false, now() + interval '30 minutes',
  current_date + 7, 'pgbench', now(), now());
\\endif
COMMIT;
"""

# Each wrk thread has one connection and is one client: it walks the slots in order and
# rotates over its families. `pending` is the slot of the request in flight (one connection,
# so answers come back in order). A slot in `collected` twice was booked twice.
LUA_BOOKING = """
creds = {creds}
first_slot, nslots, per_client = {first_slot}, {nslots}, {per_client}
counter = 0
pending = 0
function request()
  local base = ((thread_no - 1) * per_client) % #creds
  local cred = creds[base + (counter % per_client) + 1]
  pending = first_slot + (counter % nslots)
  counter = counter + 1
  local body = string.format('{{"student_id":%d,"timeslot_id":%d,"instrument":"piano","plan":"monthly"}}',
                             cred[2], pending)
  return wrk.format("POST", "/parent/bookings",
                    {{["Authorization"] = "Bearer " .. cred[1], ["Content-Type"] = "application/json"}}, body)
end
function on_response(status, headers, body)
  if status == 202 then
    collected = collected .. "," .. pending
  elseif status == 409 then
    if body ~= nil and string.find(body, "too%-many%-holds") then
      extra.too_many_holds = (extra.too_many_holds or 0) + 1
    else
      extra.slot_taken = (extra.slot_taken or 0) + 1
    end
  end
end
"""


def run_pgbench(
    url: str,
    *,
    clients: int,
    seconds: int,
    first_slot: int,
    nslots: int,
    first_student: int,
    nstudents: int,
    instrument_id: int,
    plan_id: int,
) -> dict:
    """The booking transaction under pgbench at `clients` concurrency; TPS and counts."""
    pgbench = require_tool("pgbench", "postgresql-client")
    script = work_dir("pgbench") / "booking.sql"
    script.write_text(PGBENCH_SCRIPT)
    argv = [
        pgbench,
        "-n",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-f",
        str(script),
        "-D",
        "k=0",
        "-D",
        f"first_slot={first_slot}",
        "-D",
        f"nslots={nslots}",
        "-D",
        f"first_student={first_student}",
        "-D",
        f"nstudents={nstudents}",
        "-D",
        f"instrument={instrument_id}",
        "-D",
        f"plan={plan_id}",
        libpq_url(url),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"tps = ([\d.]+) \(without initial", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")
    transactions = int(re.search(r"number of transactions actually processed: (\d+)", done.stdout).group(1))
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    inserted = sql(url, "SELECT count(*) FROM enrollment WHERE pipeline_state = 'pgbench'")[0][0]
    doubles = sql(
        url,
        f"SELECT count(*) FROM (SELECT timeslot_id FROM enrollment WHERE status IN {LIVE} "
        "GROUP BY timeslot_id HAVING count(*) > 1) AS d",
    )[0][0]
    return {
        "tps": float(match.group(1)),
        "transactions": transactions,
        "inserted": inserted,
        "latency_ms": float(latency.group(1)) if latency else None,
        "double_bookings": doubles,
    }


def run(*, clients: int = 8, seconds: int = 15, pgbench_seconds: int = 5, threads: int = 4) -> list[Figure]:
    """Measure the booking endpoint and its SQL baseline; the figures of this benchmark.

    The API run is longer than pgbench's so that it sees well over 1,000 contested attempts.
    `threads` is gunicorn's per-worker thread count (1 = the sync worker). Every figure needs
    wrk and pgbench: without one of them all are skipped.
    """
    try:
        require_tool("wrk")
        require_tool("pgbench", "postgresql-client")
    except MissingTool as missing:
        return skipped(BENCH, FIGURES, missing)
    with fresh_pg_database("bench_booking") as url:
        studio = seed_studio(url, teachers=TEACHERS, slots_per_teacher=SLOTS_PER_TEACHER, payees=clients * PAYEES_PER_CLIENT)
        slots = studio.slot_ids
        assert slots == list(range(slots[0], slots[0] + len(slots))), "slot ids must be contiguous"
        students = [student_id for _, _, student_id in studio.payees]
        # Families with a card on file, as most who book are (card-less ones: one hold each).
        sql(url, "UPDATE payee SET stripe_payment_method_id = 'pm_bench_' || id")
        # The last 2 × clients slots are kept for warming the API up; the walk uses the rest.
        walk = len(slots) - 2 * clients

        pgbench = run_pgbench(
            url,
            clients=clients,
            seconds=pgbench_seconds,
            first_slot=slots[0],
            nslots=walk,
            first_student=min(students),
            nstudents=len(students),
            instrument_id=studio.instrument_id,
            plan_id=studio.plan_id,
        )
        sql(url, "DELETE FROM enrollment")
        sql(url, "VACUUM ANALYZE")

        env = bench_env(url)
        try:
            with api_server(env, name="booking", threads=threads) as server:
                tokens = exchange_tokens(server.url, [sub for sub, _, _ in studio.payees])
                creds = [(tokens[sub], student_id) for sub, _, student_id in studio.payees]
                _warm_up(server.url, creds, slots[walk:])
                healthz = wrk(server.url + "/healthz", seconds=5, connections=clients, threads=clients, name="healthz")
                before = sql(url, "SELECT count(*) FROM enrollment")[0][0]
                lua = LUA_BOOKING.format(
                    creds="{" + ",".join(f"{{{lua_string(token)},{student}}}" for token, student in creds) + "}",
                    first_slot=slots[0],
                    nslots=walk,
                    per_client=PAYEES_PER_CLIENT,
                )
                result = wrk(
                    server.url + "/parent/bookings",
                    seconds=seconds,
                    connections=clients,
                    threads=clients,
                    script=lua,
                    name="booking",
                )
        finally:
            flush_queue(env)
        created = sql(url, "SELECT count(*) FROM enrollment")[0][0] - before
        db_doubles = sql(
            url,
            f"SELECT count(*) FROM (SELECT timeslot_id FROM enrollment WHERE status IN {LIVE} "
            "GROUP BY timeslot_id HAVING count(*) > 1) AS d",
        )[0][0]

    won = Counter(result.collected)
    answer_doubles = sum(1 for count in won.values() if count > 1)
    accepted = result.statuses.get(202, 0)
    conflicts = result.statuses.get(409, 0)
    other = result.requests - accepted - conflicts
    slots_attempted = len(won) if won else 0
    contested = conflicts  # every 409 lost a race for a slot someone else holds
    return [
        ratio_figure(
            BENCH,
            "booking req/s (POST /parent/bookings)",
            result.rps,
            "req/s",
            baseline_name="/healthz",
            baseline=healthz.rps,
            baseline_unit="req/s",
            at_least=0.35,
            note=f"{clients} clients; API {seconds} s on gunicorn 2 workers × {threads} threads; /healthz 5 s on the same "
            f"server and connections (p50 {healthz.p50_ms:.1f} ms)",
        ),
        ratio_figure(
            BENCH,
            "booking ÷ pgbench",
            result.rps,
            "req/s",
            baseline_name="pgbench booking txn",
            baseline=pgbench["tps"],
            baseline_unit="TPS",
            note=f"pgbench {pgbench_seconds} s, {pgbench['transactions']} txns "
            f"({pgbench['inserted']} inserts, avg {pgbench['latency_ms']} ms)",
        ),
        Figure(BENCH, "latency p50", result.p50_ms, "ms"),
        Figure(BENCH, "latency p99", result.p99_ms, "ms"),
        Figure(BENCH, "202 accepted", accepted, "", note=f"{slots_attempted} slots won, {created} rows created"),
        Figure(
            BENCH,
            "409 conflicts",
            conflicts,
            "",
            note=f"slot-taken {result.extra.get('slot_taken', 0)}, too-many-holds {result.extra.get('too_many_holds', 0)}",
        ),
        bound_figure(BENCH, "contested attempts", contested, "", at_least=1000),
        bound_figure(
            BENCH,
            "double bookings (answers + database)",
            answer_doubles + db_doubles,
            "",
            at_most=0,
            baseline=f"pgbench: {pgbench['double_bookings']}",
        ),
        bound_figure(
            BENCH,
            "other answers / socket errors",
            other + result.errors,
            "",
            at_most=0,
            note=str({k: v for k, v in result.statuses.items() if k not in (202, 409)}),
        ),
    ]


def _warm_up(base_url: str, creds: list[tuple[str, int]], spare_slots: list[int]) -> None:
    """One booking per client on spare slots, so both workers have imported and connected."""
    for (token, student), slot in zip(creds[::PAYEES_PER_CLIENT], spare_slots, strict=False):
        call(
            "POST",
            base_url + "/parent/bookings",
            {"student_id": student, "timeslot_id": slot, "instrument": "piano", "plan": "monthly"},
            headers={"Authorization": "Bearer " + token},
        )
    time.sleep(0.2)


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=15, help="length of the API run")
    parser.add_argument("--pgbench-seconds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (1: sync worker)")
    args = parser.parse_args()
    print_figures(
        "bench.booking",
        run(clients=args.clients, seconds=args.seconds, pgbench_seconds=args.pgbench_seconds, threads=args.threads),
    )


if __name__ == "__main__":
    main()
