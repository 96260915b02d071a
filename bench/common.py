"""What the benchmarks share beyond `tests/support/`: figures, seeding, wrk, the load generator.

Databases, servers, tokens and ports come from the support package the tests use
(`tests/support/`: `databases.fresh_pg_database`, `live.Gunicorn` = `studioctl serve`,
`stripe_server.running`, `consumer.Consumer`, `jwt_tokens`, `processes`). Everything runs on
loopback, every loop is bounded, and every database, server and queue a benchmark makes is
removed again in a `finally` (or a context manager's exit). No benchmark installs anything:
a program it needs and cannot find (`wrk`, `pgbench`, `psql`) is named, and the figures that
need it are skipped.

- `seed_studio()`      bulk rows (teachers × slots, payees with students, a plan) in plain SQL.
- `bench_env()`        the test settings for our servers, limits raised for load, a queue of its own.
- `api_server()`       `studioctl serve` (gunicorn) on a free port, logging under `bench/.work/logs/`.
- `exchange_tokens()`  Supabase HS256 sign-ins traded for our tokens at `POST /auth/exchange`.
- `wrk()`              the `wrk` load generator, with a Lua hook for unique request bodies and
                       per-status counts; `http_load()` sends an exact number of requests instead.
- `require_tool()` / `skipped()`  a missing program, and the figures skipped for want of it.
- `QueryCounter`       counts SQL statements through a `before_cursor_execute` event.
- `Figure` / `print_figures()`  a measured value, its baseline, the ratio and the target.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.databases import REDIS_TEST_URL  # noqa: E402
from tests.support.jwt_tokens import supabase_token  # noqa: E402
from tests.support.live import Gunicorn, call, server_env  # noqa: E402
from tests.support.settings import BASE_ENV, CLEARED_ENV  # noqa: E402


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
        verdict = "skipped" if self.value is None else {True: "met", False: "MISSED", None: ""}[self.met]
        return [self.name, value, self.baseline, ratio, self.target, verdict]


def _fmt(number: float) -> str:
    if abs(number) >= 100 or float(number).is_integer():
        return f"{number:,.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.3g}"


def ratio_figure(
    bench: str,
    name: str,
    value: float,
    unit: str,
    *,
    baseline_name: str,
    baseline: float,
    baseline_unit: str = "",
    at_least: float | None = None,
    at_most: float | None = None,
    note: str = "",
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
    bench: str,
    name: str,
    value: float,
    unit: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    baseline: str = "",
    note: str = "",
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


_RSS_PROBE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mb(argv: Sequence[str], *, env: dict | None = None, cwd: Path | None = None) -> float:
    """Peak RSS (MB) of one run of `argv`.

    Measured from a small `python -S` parent: Linux keeps a process's RSS high-water mark
    across exec, so a child forked straight from a big benchmark process would report the
    benchmark's own size.
    """
    done = subprocess.run(
        [sys.executable, "-S", "-c", _RSS_PROBE, *argv], env=env, cwd=cwd, check=True, capture_output=True, text=True, timeout=120
    )
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


# Processes and programs ------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class MissingTool(RuntimeError):
    """A program some figures need is not installed: those figures are skipped, nothing is installed."""

    def __init__(self, command: str, package: str):
        super().__init__(f"`{command}` is not installed (on Debian/Ubuntu: apt-get install {package})")
        self.command = command


def require_tool(command: str, package: str | None = None) -> str:
    """Path of `command`; `MissingTool` when it is not on PATH."""
    found = shutil.which(command)
    if found is None:
        raise MissingTool(command, package or command)
    return found


def skipped(bench: str, names: Sequence[str], missing: MissingTool) -> list[Figure]:
    """The figures `names` could not be measured: one line on stderr, a 'skipped' row each, the
    reason in the first one's note."""
    print(f"bench.{bench}: {missing}; skipping: {', '.join(names)}", file=sys.stderr, flush=True)
    return [Figure(bench, name, None, note="" if index else f"skipped: {missing}") for index, name in enumerate(names)]


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
            run(
                "INSERT INTO semester (name, starts_on, ends_on, makeup_starts_on, makeup_ends_on, created_at) "
                "VALUES ('Bench term', current_date - 30, current_date + 150, current_date - 30, current_date + 170, now())"
            )
        run(
            "INSERT INTO teacher (name, email, active, created_at) "
            "SELECT 'Teacher ' || n, 'teacher' || n || '@bench.test', true, now() FROM generate_series(1, %s) AS n",
            (teachers,),
        )
        run("INSERT INTO teacher_instrument (teacher_id, instrument_id) SELECT id, %s FROM teacher", (instrument_id,))
        run(
            "INSERT INTO timeslot (teacher_id, weekday, start_minute, active, created_at) "
            "SELECT t.id, k %% 6, 840 + (k / 6) * 30, true, now() "
            "FROM teacher t CROSS JOIN generate_series(0, %s - 1) AS k ORDER BY t.id, k",
            (slots_per_teacher,),
        )
        slot_ids = [row[0] for row in run("SELECT id FROM timeslot ORDER BY id")]
        people = []
        if payees:
            run(
                "INSERT INTO payee (supabase_user_id, email, name, calendar_token, created_at, updated_at) "
                "SELECT 'bench-user-' || n, 'parent' || n || '@bench.test', 'Parent ' || n, md5(random()::text || n), "
                "now(), now() FROM generate_series(1, %s) AS n",
                (payees,),
            )
            run("INSERT INTO student (payee_id, name, created_at) SELECT id, 'Student of ' || name, now() FROM payee")
            people = [
                (sub, payee_id, student_id)
                for sub, payee_id, student_id in run(
                    "SELECT p.supabase_user_id, p.id, s.id FROM payee p JOIN student s ON s.payee_id = p.id ORDER BY p.id"
                )
            ]
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
    """Environment for our processes: the test settings (`tests/support/settings.py`) on the
    bench database, with the hold cap and rate limits raised for load.

    Tasks go to Redis under a queue name of their own (`HUEY_NAME`), so no other consumer
    on this machine sees them; `flush_queue()` removes it afterwards.
    """
    values = {
        **BASE_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_TEST_URL,
        "HUEY_NAME": f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}",
        "STUDIO_NAME": "Bench Studio",
        "OUTBOX_DIR": str(work_dir("outbox")),
        "MAX_HOLDS_PER_PAYEE": "100",
        "CARDLESS_HOLDS_PER_PAYEE": "100",
        "MAX_CARDLESS_HOLDS": "10000",
        "RATELIMIT_AUTH": "1000000/minute",
        "RATELIMIT_BOOKINGS": "1000000/minute",
        "RATELIMIT_PARENT_WRITES": "1000000/minute",
        **extra,
    }
    return server_env(without=CLEARED_ENV, **values)


def flush_queue(env: dict[str, str]) -> None:
    """Delete the Redis keys of the bench's Huey queue (and of its rate-limit counters)."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        for pattern in (f"*{env['HUEY_NAME']}*", "*studio-api*bench-user-*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
    finally:
        client.close()


def api_server(env: dict[str, str], *, name: str, workers: int = 2, threads: int = 4) -> Gunicorn:
    """`studioctl serve` (gunicorn: gthread, the production default, or the sync worker with
    `threads=1`) on a free loopback port, for a `with` block; it waits for `/healthz` and is
    stopped on exit. Its log: `bench/.work/logs/<name>.log`, fresh each run."""
    log = work_dir("logs") / f"{name}.log"
    log.unlink(missing_ok=True)
    return Gunicorn(env, log, workers=workers, threads=threads)


def exchange_tokens(base_url: str, subs: Sequence[str]) -> dict[str, str]:
    """Our API tokens for each Supabase subject, through the real `POST /auth/exchange`."""
    tokens = {}
    for sub in subs:
        answer = call(
            "POST", base_url + "/auth/exchange", headers={"Authorization": "Bearer " + supabase_token(sub, f"{sub}@bench.test")}
        )
        if answer.status != 200:
            raise RuntimeError(f"/auth/exchange answered {answer.status}: {answer.body}")
        tokens[sub] = answer.body["access_token"]
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


def wrk(
    url: str,
    *,
    seconds: int = 5,
    connections: int = 16,
    threads: int = 2,
    script: str = "",
    headers: dict | None = None,
    name: str = "wrk",
) -> WrkResult:
    """Run `wrk` against `url` with an optional Lua `script`.

    The script may define `request()`, `on_response(status, headers, body)` and `init(args)`,
    count into the global `extra` table (flat numbers) and append ",item" to the global
    string `collected`; each thread knows its number as `thread_no` (1-based). `MissingTool`
    when wrk is not installed.
    """
    binary = require_tool("wrk")
    script_path = work_dir("lua") / f"{name}-{uuid.uuid4().hex[:6]}.lua"
    script_path.write_text(script + "\n" + _WRK_FOOTER)
    argv = [binary, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script_path)]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    try:
        done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        script_path.unlink(missing_ok=True)
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    data = json.loads(line[len("WRKJSON ") :])
    errors = sum(int(data.get(key, 0)) for key in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()},
        errors=errors,
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
        mem_kb = next(
            int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
        )
        facts["memory"] = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    try:
        facts["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
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


def http_load(
    base_url: str,
    requests: Sequence[tuple[str, str, bytes | None, dict]],
    *,
    total: int,
    concurrency: int = 4,
    timeout: float = 30.0,
) -> LoadResult:
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
