"""Test fixtures: real databases built by `alembic upgrade head`, one rolled-back transaction per test.

Engines: `--engines sqlite,postgres` or `STUDIO_TEST_ENGINES` (default: both when PostgreSQL
answers, else SQLite only). Under `CI=true` PostgreSQL and Redis must answer: their tests
fail instead of skipping.

Fixtures
- `db_url`: the migrated database of the current engine (parametrised: every test that
  uses `db` runs on each engine).
- `db`: binds every `session_scope()` to one outer transaction rolled back after the test.
- `session`: a session inside that transaction, for arranging data and asserting.
- `committed_db`: for tests whose work must really commit (threads, HTTP servers,
  consumers): no outer transaction; all tables are emptied before and after.
- `redis_url`: the real Redis (a private key prefix per run).
- `stripe_contract` (autouse): every request any local Stripe of the session receives (from
  this process, consumers, gunicorn servers, the demo) is checked against stripe-python's
  parameter types (`tests/support/stripe_contract.py`); a test whose requests real Stripe would
  refuse reports an error listing them. `@pytest.mark.stripe_contract_exempt` for deliberate
  ones; `--stripe-contract=report` lists them at the end instead of failing.
- from `pytest_plugins`, for every module without an import: `stripe_server`, `stripe_env`,
  `mailjet`, `consumers` (`tests/support/fixtures.py`); `app`, `client`, `family_a`,
  `family_b`, `studio` (`tests/support/api.py`).
"""

from __future__ import annotations

import os

import pytest

from tests.support.databases import REDIS_TEST_URL, fresh_pg_database, migrate, postgres_available, redis_available
from tests.support.settings import BASE_ENV, CLEARED_ENV

# Fixtures shared by many modules: every test module sees them without importing them.
pytest_plugins = ["tests.support.fixtures", "tests.support.api"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser):
    parser.addoption(
        "--engines",
        default=os.environ.get("STUDIO_TEST_ENGINES"),
        help="comma list of sqlite,postgres (default: both when PostgreSQL answers)",
    )
    parser.addoption(
        "--stripe-contract",
        choices=("fail", "report"),
        default="fail",
        help="a test whose Stripe requests break the API contract: fail it (default) or only report it",
    )


def _engines(config) -> list[str]:
    chosen = config.getoption("--engines")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    return ["sqlite", "postgres"] if (IN_CI or postgres_available()) else ["sqlite"]


def pytest_generate_tests(metafunc):
    if "engine_name" in metafunc.fixturenames:
        engines = _engines(metafunc.config)
        only = metafunc.definition.get_closest_marker("postgres")
        if only:
            engines = ["postgres"] if "postgres" in engines or IN_CI else []
            if not engines:
                metafunc.parametrize(
                    "engine_name",
                    [pytest.param("postgres", marks=pytest.mark.skip(reason="PostgreSQL not reachable"))],
                    scope="session",
                )
                return
        metafunc.parametrize("engine_name", engines, scope="session")


_CONTRACT = pytest.StashKey[dict]()


@pytest.fixture(scope="session", autouse=True)
def _stripe_contract_log(request, tmp_path_factory):
    """One file where every local Stripe started in this session (they inherit the variable)
    appends the requests the current Stripe API would refuse."""
    from tests.support.stripe_contract import LOG_ENV, ContractLog

    log = ContractLog(tmp_path_factory.getbasetemp() / "stripe-contract.jsonl")
    state = request.config.stash.setdefault(_CONTRACT, {"log": log, "offset": 0, "found": []})
    previous = os.environ.get(LOG_ENV)
    os.environ[LOG_ENV] = log.path
    try:
        yield state
    finally:
        if previous is None:
            os.environ.pop(LOG_ENV, None)
        else:
            os.environ[LOG_ENV] = previous


def _take_violations(state: dict) -> list[dict]:
    """The violations logged since the last look."""
    log = state["log"]
    end = log.mark()
    found = log.violations(state["offset"]) if end > state["offset"] else []
    state["offset"] = end
    return found


@pytest.fixture(autouse=True)
def stripe_contract(request, _stripe_contract_log):
    """The test reports an error when the Stripe requests made during it (by any process)
    would be refused by the current API: unknown or ill-typed parameters, a missing required
    one, a route `stripe_contract.ROUTES` does not know, another Stripe-Version."""
    from tests.support.stripe_contract import summarize

    state = _stripe_contract_log
    state["found"] += [("(between tests)", violation) for violation in _take_violations(state)]
    yield
    found = _take_violations(state)
    if not found:
        return
    if request.node.get_closest_marker("stripe_contract_exempt"):
        state.setdefault("exempt", 0)
        state["exempt"] += len(found)
        return
    state["found"] += [(request.node.nodeid, violation) for violation in found]
    if request.config.getoption("--stripe-contract") == "fail":
        lines = "\n".join(f"  {line}" for line in summarize(found))
        pytest.fail(
            f"Stripe request contract: this test sent {len(found)} request(s) the current Stripe API "
            f"would refuse (tests/support/stripe_contract.py; mark the test stripe_contract_exempt if "
            f"that is deliberate):\n{lines}",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter, config):
    state = config.stash.get(_CONTRACT, None)
    if state is None:
        return
    from tests.support.stripe_contract import summarize

    state["found"] += [("(after the tests)", violation) for violation in _take_violations(state)]
    checked = state["log"].checked()
    found = state["found"]
    terminalreporter.section("Stripe request contract")
    exempt = f", {state['exempt']} more in tests marked stripe_contract_exempt" if state.get("exempt") else ""
    terminalreporter.write_line(
        f"{checked} request(s) checked by the local Stripe servers that have stopped; {len(found)} violation(s){exempt}"
    )
    first_seen: dict[str, str] = {}
    for nodeid, violation in found:
        for line in summarize([violation]):
            first_seen.setdefault(line, nodeid)
    for line in summarize([violation for _, violation in found]):
        terminalreporter.write_line(f"  {line}  [first: {first_seen.get(line.rsplit(' (x', 1)[0], '?')}]")


@pytest.fixture(autouse=True)
def _environment(monkeypatch, tmp_path):
    """A known configuration for every test; settings re-read per test."""
    from models.config import reset_settings

    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    monkeypatch.chdir(tmp_path)  # keep `.env` files and studio.db of the checkout out of tests
    reset_settings()
    yield
    reset_settings()


@pytest.fixture(scope="session")
def db_url(engine_name, tmp_path_factory):
    """A migrated database for the engine under test, for the whole session."""
    if engine_name == "postgres":
        if not postgres_available():
            if IN_CI:
                pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI requires it)")
            pytest.skip("PostgreSQL not reachable")
        with fresh_pg_database() as url:
            yield url
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'studio.db'}"
        migrate(url)
        yield url


@pytest.fixture
def db(db_url, monkeypatch):
    """Every unit of work of the test runs inside one outer transaction, rolled back afterwards."""
    from models import db as dbmod
    from models.config import reset_settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    reset_settings()
    engine = dbmod.get_engine(db_url)
    connection = engine.connect()
    transaction = connection.begin()
    dbmod.set_bind_override(connection)
    try:
        yield connection
    finally:
        dbmod.set_bind_override(None)
        if transaction.is_active:
            transaction.rollback()
        connection.close()


@pytest.fixture
def session(db):
    """A session inside the test's transaction (savepoints for its commits)."""
    from sqlmodel import Session

    with Session(bind=db, join_transaction_mode="create_savepoint", expire_on_commit=False) as session:
        yield session


def truncate_all(url: str) -> None:
    """Empty every table of ours (committed tests clean up before and after themselves)."""
    import sqlalchemy as sa

    from models.tables import metadata

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        else:
            for table in reversed(metadata.sorted_tables):
                connection.execute(table.delete())
    engine.dispose()


@pytest.fixture
def committed_db(db_url, monkeypatch):
    """The engine's database with real commits (threads, servers, consumers see each other's work)."""
    from models import db as dbmod
    from models.config import reset_settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    reset_settings()
    truncate_all(db_url)
    yield db_url
    dbmod.dispose_engines()
    truncate_all(db_url)


@pytest.fixture
def redis_url():
    """The real Redis; fails under CI when it is not reachable."""
    if not redis_available():
        if IN_CI:
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 (CI requires it)")
        pytest.skip("Redis not reachable")
    return REDIS_TEST_URL


class TaskQueue:
    """The Huey queue of the test process, on memory storage: tasks are recorded, not run."""

    def __init__(self, huey):
        self.huey = huey

    def pending(self) -> list[tuple[str, tuple]]:
        """(task name, args) of every enqueued task, oldest first."""
        return [(task.name, tuple(task.args)) for task in self.huey.pending()]

    def names(self) -> list[str]:
        return [name for name, _ in self.pending()]

    def run_all(self) -> int:
        """Run every pending task once in this process (tests of the pipeline use a real consumer)."""
        count = 0
        while True:
            task = self.huey.dequeue()
            if task is None:
                return count
            self.huey.execute(task)
            count += 1

    def clear(self) -> None:
        self.huey.flush()


@pytest.fixture(autouse=True)
def task_queue():
    """Every test gets an empty in-memory Huey queue; enqueued tasks wait there. The test
    process is wired as every entry point wires itself (emails enqueued after commit)."""
    from huey.storage import MemoryStorage

    from workers import consumer, wiring  # noqa: F401  (consumer: every task and periodic job known)
    from workers.app import huey

    wiring.install()

    original_storage, original_immediate = huey.storage, huey.immediate
    huey.immediate = False
    huey.storage = MemoryStorage(huey.name)
    try:
        yield TaskQueue(huey)
    finally:
        huey.storage, huey.immediate = original_storage, original_immediate
