"""`studioctl doctor`'s checks of what the database says about the workers: a consumer alive
(its heartbeat), the periodic jobs on schedule, open dead letters, holds past their expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workers.health_outcome import FAIL, OK, Check, ago

# A consumer beats every minute: three missed beats and it counts as gone.
HEARTBEAT_STALE = timedelta(minutes=3)
# The expiry job runs every minute: a hold this far past its expiry means it does not.
HOLD_GRACE = timedelta(minutes=3)


def consumer_check(seen: list[dict], now: datetime) -> Check:
    start = "start one: `studioctl worker` (periodic jobs on: the heartbeat is one of them)"
    if not seen:
        return Check("consumer", FAIL, "no consumer seen in the last day (none has written a heartbeat)", start)
    latest = seen[0]
    alive = [row for row in seen if now - row["seen_at"] <= HEARTBEAT_STALE]
    facts = {"last_seen": latest["seen_at"], "consumer": latest["consumer"], "alive": len(alive)}
    if not alive:
        return Check(
            "consumer",
            FAIL,
            f"last seen {ago(now - latest['seen_at'])} ago ({latest['consumer']})",
            start + "; its log says why the last one stopped",
            facts,
        )
    return Check(
        "consumer",
        OK,
        f"{len(alive)} alive; last seen {ago(now - latest['seen_at'])} ago "
        f"({latest['consumer']}, up {ago(latest['seen_at'] - latest['started_at'])})",
        facts=facts,
    )


def jobs_check(runs: dict[str, dict], seen: list[dict], now: datetime) -> Check:
    from workers.periodic import JOBS

    alive = [row["started_at"] for row in seen if now - row["seen_at"] <= HEARTBEAT_STALE]
    up_since = min(alive, default=None)
    late, never, waiting = [], [], 0
    for job in JOBS.values():
        allowed = job.every * 1.5 + timedelta(minutes=2)
        run = runs.get(job.name)
        if run is None:
            if up_since is not None and now - up_since <= allowed:
                waiting += 1
            else:
                never.append(job.name)
        elif run["last_error"]:
            late.append(f"{job.name}'s last run ({ago(now - run['last_started_at'])} ago) failed: {run['last_error']}")
        elif now - run["last_started_at"] > allowed:
            late.append(f"{job.name} last ran {ago(now - run['last_started_at'])} ago ({job.schedule})")
    if never:
        late.append(f"never ran: {', '.join(never)}")
    facts = {name: {"last_started_at": run["last_started_at"], "last_error": run["last_error"]} for name, run in runs.items()}
    if late:
        return Check(
            "periodic_jobs",
            FAIL,
            "; ".join(late),
            "a consumer runs them (`studioctl worker`, periodic jobs on); `studioctl jobs run NAME` runs one now",
            facts,
        )
    due = f"; {waiting} not due yet since the consumer started" if waiting else ""
    return Check("periodic_jobs", OK, f"{len(JOBS) - waiting} ran on schedule{due}", facts=facts)


def dead_letters_check(letters: dict, now: datetime) -> Check:
    if not letters["count"]:
        return Check("dead_letters", OK, "none open")
    kinds = ", ".join(f"{count} {kind}" for kind, count in letters["kinds"].items())
    return Check(
        "dead_letters",
        FAIL,
        f"{letters['count']} open ({kinds}); the oldest {ago(now - letters['oldest'])} old",
        "`studioctl deadletters list`, then `studioctl deadletters retry ID` or `resolve ID`",
        {"count": letters["count"], "kinds": letters["kinds"]},
    )


def holds_check(holds: dict, now: datetime) -> Check:
    if not holds["count"]:
        return Check("expired_holds", OK, f"none past its expiry by more than {ago(HOLD_GRACE)}")
    ids = ", ".join(str(enrollment_id) for enrollment_id in holds["ids"]) + ("…" if holds["count"] > len(holds["ids"]) else "")
    return Check(
        "expired_holds",
        FAIL,
        f"{holds['count']} hold(s) still held past their expiry (enrollments {ids}; "
        f"the oldest expired {ago(now - holds['oldest_expiry'])} ago): the expiry job is not running",
        "start a consumer (`studioctl worker`), or run it now: `studioctl jobs run expire_provisional_holds`",
        {"count": holds["count"], "ids": holds["ids"]},
    )
