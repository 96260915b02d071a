"""Shared helpers of the benchmarks: databases, servers, tokens, load generators, figures.

Everything runs on loopback, every loop is bounded, and every database, server and queue a
benchmark makes is removed again in a `finally` (or a context manager's exit).

- `bench_database()`   a fresh PostgreSQL database, `alembic upgrade head`, dropped after.
- `seed_studio()`      bulk rows (teachers × slots, payees with students, a plan) in plain SQL.
- `api_server()`       gunicorn serving `webapi:create_app()` on a free port, stopped after.
- `exchange_tokens()`  Supabase HS256 sign-ins traded for our tokens at `POST /auth/exchange`.
- `wrk()`              the `wrk` load generator (installed from Debian when missing), with a Lua
                       hook for unique request bodies and per-status counts.
- `QueryCounter`       counts SQL statements through a `before_cursor_execute` event.
- `Figure` / `print_figures()`  a measured value, its baseline, the ratio and the target.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
PG_ADMIN_URL = os.environ.get("STUDIO_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STUDIO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
SUPABASE_SECRET = "bench-supabase-secret-0123456789abcdef0123"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def work_dir(*parts: str) -> Path:
    """A scratch folder under `bench/.work/` (gitignored), created on demand."""
    path = WORK.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# Figures ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure: its value, the baseline of the same run, the ratio and the target.

    `target` reads like "≥ 0.25" or "≤ 100 MB"; `met` is None for context-only figures.
    """

    bench: str
    name: str
    value: float | None
    unit: str = ""
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_row(self) -> list[str]:
        """The figure as table cells: name, value, baseline, ratio, target, verdict."""
        value = "—" if self.value is None else f"{_fmt(self.value)} {self.unit}".strip()
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        verdict = {True: "met", False: "MISSED", None: ""}[self.met]
        return [self.name, value, self.baseline, ratio, self.target, verdict]


def _fmt(number: float) -> str:
    if abs(number) >= 100 or float(number).is_integer():
        return f"{number:,.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.3g}"


def ratio_figure(
    bench: str, name: str, value: float, unit: str, *, baseline_name: str, baseline: float, baseline_unit: str = "",
    at_least: float | None = None, at_most: float | None = None, note: str = "",
) -> Figure:
    """A figure whose verdict is `value / baseline` against a lower or upper bound."""
    ratio = value / baseline if baseline else None
    if at_least is not None:
        target, met = f"ratio ≥ {at_least}", (ratio is not None and ratio >= at_least)
    elif at_most is not None:
        target, met = f"ratio ≤ {at_most}", (ratio is not None and ratio <= at_most)
    else:
        target, met = "", None
    base = f"{baseline_name} {_fmt(baseline)} {baseline_unit or unit}".strip()
    return Figure(bench, name, value, unit, base, ratio, target, met, note)


def bound_figure(
    bench: str, name: str, value: float, unit: str, *, at_most: float | None = None, at_least: float | None = None,
    baseline: str = "", note: str = "",
) -> Figure:
    """A figure checked against an absolute bound (memory, query counts, double bookings)."""
    if at_most is not None:
        target, met = f"≤ {_fmt(at_most)} {unit}".strip(), value <= at_most
    elif at_least is not None:
        target, met = f"≥ {_fmt(at_least)} {unit}".strip(), value >= at_least
    else:
        target, met = "", None
    return Figure(bench, name, value, unit, baseline, None, target, met, note)


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    """Print the figures as a Rich table (plain text when Rich is missing)."""
    headers = ["figure", "value", "baseline (same run)", "ratio", "target", ""]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a runtime dependency
        print(title)
        for figure in figures:
            print("  " + " | ".join(figure.as_row()))
        return
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, overflow="fold")
    for figure in figures:
        row = figure.as_row()
        row[-1] = {"met": "[green]met[/]", "MISSED": "[red]MISSED[/]"}.get(row[-1], row[-1])
        table.add_row(*row)
    console = Console(width=max(120, shutil.get_terminal_size((120, 20)).columns))
    console.print(table)
    for figure in figures:
        if figure.note:
            console.print(f"  [dim]{figure.name}: {figure.note}[/]")


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`th percentile (nearest-rank on sorted values); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


_RSS_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_mb(argv: Sequence[str], *, env: dict | None = None, cwd: Path | None = None) -> float:
    """Peak RSS (MB) of one run of `argv`.

    Measured from a small `python -S` parent: Linux keeps a process's RSS high-water mark
    across exec, so a child forked straight from a big benchmark process would report the
    benchmark's own size.
    """
    done = subprocess.run([sys.executable, "-S", "-c", _RSS_PROBE, *argv], env=env, cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=120)
    return int(done.stdout.split()[-1]) / 1024


def median_time(argv: Sequence[str], *, repeat: int = 7, env: dict | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """Median wall time (s) of running `argv` `repeat` times, and its peak RSS (MB).

    The first run is a warm-up (page cache, .pyc) and is not counted.
    """
    times = []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
        _, status, _usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {process.stderr.read().decode()[-800:]}")
        process.stderr.close()
        if attempt:
            times.append(elapsed)
    return statistics.median(times), peak_rss_mb(argv, env=env, cwd=cwd)


# Processes and ports ---------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Wait until something accepts on 127.0.0.1:`port` (fail early if `process` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(process: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop one process we started: `sig`, then SIGKILL after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (e.g. gunicorn's workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(item) for item in text.split()]


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ensure_debian_tool(command: str, package: str | None = None) -> str:
    """Path of `command`, installing its Debian package with apt-get when missing."""
    found = shutil.which(command)
    if found:
        return found
    package = package or command
    print(f"installing {package} (apt-get install -y {package}) ...", file=sys.stderr)
    apt = ["apt-get", "install", "-y", "-q", package]
    if os.geteuid() != 0 and shutil.which("sudo"):
        apt.insert(0, "sudo")
    subprocess.run(apt, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"{command} is still missing after installing {package}")
    return found


def tool_version(argv: Sequence[str]) -> str:
    """First line of a tool's version output ('' when it cannot run)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return ((done.stdout or done.stderr).strip().splitlines() or [""])[0]


# Databases -------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """The `postgresql://` form psql and pgbench understand."""
    return "postgresql://" + url.split("://", 1)[1]


def create_database(prefix: str = "studio_bench") -> str:
    """Create an empty PostgreSQL database and return its SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by `create_database` (its stray connections are terminated)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    """Build the schema the way production does: `alembic upgrade head`."""
    from alembic import command

    from migrations import alembic_config

    command.upgrade(alembic_config(url), "head")


@contextmanager
def bench_database(prefix: str = "studio_bench") -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one benchmark; dropped on exit."""
    url = create_database(prefix)
    try:
        migrate(url)
        yield url
    finally:
        try:
            from models.db import dispose_engines

            dispose_engines()
        finally:
            drop_database(url)


def sql(url: str, statement: str, params: Sequence | dict | None = None) -> list[tuple]:
    """Run one statement on `url` in its own committed transaction; the rows it returned."""
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@dataclass
class Studio:
    """Ids of the rows `seed_studio` made."""

    slot_ids: list[int]
    payees: list[tuple[str, int, int]] = field(default_factory=list)  # (supabase sub, payee id, student id)
    plan_id: int = 0
    instrument_id: int = 0


def seed_studio(url: str, *, teachers: int, slots_per_teacher: int, payees: int = 0, semester: bool = True) -> Studio:
    """Bulk-insert a studio: piano teachers × weekly slots, payees with one student each, a monthly plan.

    Slots are spread over Monday–Saturday from 14:00 (30-minute steps), at most 96 a teacher.
    Payees sign in as `bench-user-<n>`. Plain SQL keeps this to a second for thousands of rows.
    """
    import psycopg

    assert slots_per_teacher <= 6 * 16, "at most 16 half-hours a day, 6 days"
    with psycopg.connect(libpq_url(url)) as connection:
        run = connection.execute
        instrument_id = run("INSERT INTO instrument (name) VALUES ('piano') RETURNING id").fetchone()[0]
        plan_id = run(
            "INSERT INTO plan (name, frequency, amount_cents, currency, active, created_at) "
            "VALUES ('monthly plan', 'monthly', 12000, 'usd', true, now()) RETURNING id"
        ).fetchone()[0]
        if semester:
            run("INSERT INTO semester (name, starts_on, ends_on, makeup_starts_on, makeup_ends_on, created_at) "
                "VALUES ('Bench term', current_date - 30, current_date + 150, current_date - 30, current_date + 170, now())")
        run("INSERT INTO teacher (name, email, active, created_at) "
            "SELECT 'Teacher ' || n, 'teacher' || n || '@bench.test', true, now() FROM generate_series(1, %s) AS n",
            (teachers,))
        run("INSERT INTO teacher_instrument (teacher_id, instrument_id) SELECT id, %s FROM teacher", (instrument_id,))
        run("INSERT INTO timeslot (teacher_id, weekday, start_minute, active, created_at) "
            "SELECT t.id, k %% 6, 840 + (k / 6) * 30, true, now() "
            "FROM teacher t CROSS JOIN generate_series(0, %s - 1) AS k ORDER BY t.id, k", (slots_per_teacher,))
        slot_ids = [row[0] for row in run("SELECT id FROM timeslot ORDER BY id")]
        people = []
        if payees:
            run("INSERT INTO payee (supabase_user_id, email, name, calendar_token, created_at, updated_at) "
                "SELECT 'bench-user-' || n, 'parent' || n || '@bench.test', 'Parent ' || n, md5(random()::text || n), "
                "now(), now() FROM generate_series(1, %s) AS n", (payees,))
            run("INSERT INTO student (payee_id, name, created_at) SELECT id, 'Student of ' || name, now() FROM payee")
            people = [(sub, payee_id, student_id) for sub, payee_id, student_id in run(
                "SELECT p.supabase_user_id, p.id, s.id FROM payee p JOIN student s ON s.payee_id = p.id ORDER BY p.id")]
        connection.commit()
    return Studio(slot_ids=slot_ids, payees=people, plan_id=plan_id, instrument_id=instrument_id)


class QueryCounter:
    """Counts the SQL statements an engine sends (`before_cursor_execute`), and keeps them."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[str] = []

    def _on_execute(self, _conn, _cursor, statement, _params, _context, _executemany):
        self.statements.append(statement)

    def __enter__(self) -> QueryCounter:
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *exc) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._on_execute)

    @property
    def count(self) -> int:
        """How many statements were sent (BEGIN/COMMIT are not statements of ours)."""
        return len(self.statements)


# The API under gunicorn ------------------------------------------------------------------


def bench_env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for our processes: the bench database, bench secrets, limits raised for load.

    Tasks go to Redis under a queue name of their own (`HUEY_NAME`), so no other consumer
    on this machine sees them; `flush_queue()` removes it afterwards.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STRIPE_", "MAILJET_"))}
    env.update({
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "HUEY_NAME": f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}",
        "JWT_SECRET": JWT_SECRET,
        "SUPABASE_JWT_SECRET": SUPABASE_SECRET,
        "STUDIO_TIMEZONE": "America/New_York",
        "STUDIO_NAME": "Bench Studio",
        "EMAIL_BACKEND": "file",
        "OUTBOX_DIR": str(work_dir("outbox")),
        "CORS_ORIGINS": "https://app.bench.test",
        "ADMIN_EMAIL_ALLOWLIST": "admin@bench.test",
        "MAX_HOLDS_PER_PAYEE": "100",
        "RATELIMIT_AUTH": "1000000/minute",
        "RATELIMIT_BOOKINGS": "1000000/minute",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def flush_queue(env: dict[str, str]) -> None:
    """Delete the Redis keys of the bench's Huey queue (and of its rate-limit counters)."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        for pattern in (f"*{env['HUEY_NAME']}*", "*studio-api*bench-user-*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
    finally:
        client.close()


@dataclass
class Server:
    """A running gunicorn: its base URL, master process and log file."""

    url: str
    port: int
    process: subprocess.Popen
    log: Path

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the master)."""
        return child_pids(self.process.pid)


@contextmanager
def api_server(env: dict[str, str], *, workers: int = 2, threads: int = 4, name: str = "api") -> Iterator[Server]:
    """gunicorn with `webapi:create_app()` on a free loopback port, as `studioctl serve` runs it.

    `threads > 1` is the gthread worker (the production default of `studioctl serve`), 1 the
    sync worker. Waits for `/healthz`; always stopped (SIGTERM, then SIGKILL) on exit.
    """
    port = free_port()
    log = work_dir("logs") / f"{name}-{port}.log"
    argv = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "gthread" if threads > 1 else "sync", "--threads", str(threads),
            "--graceful-timeout", "5", "--log-level", "warning", "webapi:create_app()"]
    with open(log, "wb") as handle:
        process = subprocess.Popen(argv, env=env, cwd=str(work_dir()), stdout=handle, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", port, process, log)
    try:
        wait_for_port(port, process=process)
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_json("GET", server.url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the API did not become healthy; log: {log}\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop_process(process)


def http_json(method: str, url: str, body: dict | None = None, *, headers: dict | None = None,
              timeout: float = 10.0) -> tuple[int, dict | str]:
    """One HTTP request with a JSON body; (status, decoded JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def supabase_token(sub: str, email: str, *, ttl: int = 3600) -> str:
    """A Supabase-style HS256 access token (aud `authenticated`) signed with the bench secret."""
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": sub, "email": email, "aud": "authenticated", "role": "authenticated",
                       "iat": now, "exp": now + ttl}, SUPABASE_SECRET, algorithm="HS256")


def exchange_tokens(base_url: str, subs: Sequence[str]) -> dict[str, str]:
    """Our API tokens for each Supabase subject, through the real `POST /auth/exchange`."""
    tokens = {}
    for sub in subs:
        status, answer = http_json("POST", base_url + "/auth/exchange", headers={
            "Authorization": "Bearer " + supabase_token(sub, f"{sub}@bench.test")})
        if status != 200:
            raise RuntimeError(f"/auth/exchange answered {status}: {answer}")
        tokens[sub] = answer["access_token"]
    return tokens


# wrk -------------------------------------------------------------------------------------

# Appended to every wrk script: per-thread status counts, the script's own flat `extra`
# counters and its `collected` string (wrk's thread:get crashes on nested tables, so lists
# travel as comma-separated strings), merged in `done()` and printed as one JSON line.
_WRK_FOOTER = r"""
local __threads = {}
function setup(thread)
  thread:set("thread_no", #__threads + 1)
  table.insert(__threads, thread)
end
statuses = {}
extra = extra or {}
collected = collected or ""
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if on_response then on_response(status, headers, body) end
end
local function merge(into, from)
  for k, v in pairs(from) do
    if type(v) == "table" then
      into[k] = into[k] or {}
      merge(into[k], v)
    else
      into[k] = (into[k] or 0) + v
    end
  end
end
local function encode(value)
  if type(value) == "table" then
    local parts = {}
    for k, v in pairs(value) do table.insert(parts, string.format("%q:%s", tostring(k), encode(v))) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(value)
end
function done(summary, latency, requests)
  local counts, merged, lists = {}, {}, {}
  for _, thread in ipairs(__threads) do
    merge(counts, thread:get("statuses") or {})
    merge(merged, thread:get("extra") or {})
    table.insert(lists, thread:get("collected") or "")
  end
  local errors = summary.errors
  io.write("WRKJSON " .. encode({
    requests = summary.requests, duration_us = summary.duration,
    p50_us = latency:percentile(50), p90_us = latency:percentile(90), p99_us = latency:percentile(99),
    mean_us = latency.mean, max_us = latency.max,
    connect_errors = errors.connect, read_errors = errors.read, write_errors = errors.write,
    timeouts = errors.timeout, non2xx = errors.status,
    statuses = counts, extra = merged,
  }):sub(1, -2) .. ',"collected":"' .. table.concat(lists, ",") .. '"}\n')
end
"""


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    statuses: dict[int, int]
    errors: int
    extra: dict
    collected: list[str]

    @property
    def rps(self) -> float:
        """Requests per second over the whole run."""
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(url: str, *, seconds: int = 5, connections: int = 16, threads: int = 2, script: str = "",
        headers: dict | None = None, name: str = "wrk") -> WrkResult:
    """Run `wrk` against `url` with an optional Lua `script`.

    The script may define `request()`, `on_response(status, headers, body)` and `init(args)`,
    count into the global `extra` table (flat numbers) and append ",item" to the global
    string `collected`; each thread knows its number as `thread_no` (1-based).
    """
    binary = ensure_debian_tool("wrk")
    script_path = work_dir("lua") / f"{name}-{uuid.uuid4().hex[:6]}.lua"
    script_path.write_text(script + "\n" + _WRK_FOOTER)
    argv = [binary, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
            "-s", str(script_path)]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    try:
        done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        script_path.unlink(missing_ok=True)
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    data = json.loads(line[len("WRKJSON "):])
    errors = sum(int(data.get(key, 0)) for key in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()}, errors=errors,
        extra=data.get("extra", {}),
        collected=[item for item in data.get("collected", "").split(",") if item],
    )


def lua_string(value: str) -> str:
    """A Lua string literal for `value` (ASCII tokens and paths)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def machine_facts() -> dict[str, str]:
    """CPU count, memory, CPU model, versions of the pieces measured, and the date."""
    import platform

    facts = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": str(os.cpu_count())}
    try:
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
        facts["memory"] = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    try:
        facts["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                            if line.startswith("model name"))
    except (OSError, StopIteration):
        facts["cpu"] = platform.processor() or "unknown"
    facts["kernel"] = platform.release()
    facts["python"] = platform.python_version()
    from importlib import metadata

    for package in ("flask", "gunicorn", "sqlalchemy", "sqlmodel", "psycopg", "typer", "huey", "stripe", "localstripe"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    facts["postgresql"] = tool_version(["psql", "--version"])
    facts["pgbench"] = tool_version(["pgbench", "--version"])
    facts["wrk"] = tool_version(["wrk", "--version"]) if shutil.which("wrk") else "not installed"
    return facts


# A Python load generator (exact request counts; wrk runs for a duration instead) ---------


@dataclass
class LoadResult:
    """What `http_load` saw: answers by status, latencies (ms), errors, wall time."""

    statuses: dict[int, int]
    latencies_ms: list[float]
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        """Requests per second over the whole run."""
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def http_load(base_url: str, requests: Sequence[tuple[str, str, bytes | None, dict]], *, total: int,
              concurrency: int = 4, timeout: float = 30.0) -> LoadResult:
    """Send exactly `total` requests, cycling through `requests` (method, path, body, headers),
    from `concurrency` threads, each on its own keep-alive `http.client` connection."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    lock = threading.Lock()
    counter = iter(range(total))
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors = [0]

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        local_statuses: dict[int, int] = {}
        local_latencies: list[float] = []
        local_errors = 0
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            method, path, body, headers = requests[index % len(requests)]
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                local_statuses[response.status] = local_statuses.get(response.status, 0) + 1
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException):
                local_errors += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                continue
            local_latencies.append((time.perf_counter() - started) * 1000)
        connection.close()
        with lock:
            for status, count in local_statuses.items():
                statuses[status] = statuses.get(status, 0) + count
            latencies.extend(local_latencies)
            errors[0] += local_errors

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(statuses, latencies, errors[0], time.perf_counter() - started)


@contextmanager
def in_process_app(env: dict[str, str]):
    """`webapi.create_app()` in this process with `env` applied (for counting statements);
    the environment and settings are restored on exit."""
    from models.config import reset_settings

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_settings()
    try:
        from webapi import create_app

        yield create_app()
    finally:
        restore_environ(saved)


def restore_environ(saved: dict[str, str | None]) -> None:
    """Put back the environment variables a bench changed in-process (None: was unset), and
    forget the engines and settings built from the bench's values."""
    from models.config import reset_settings
    from models.db import dispose_engines

    dispose_engines()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
