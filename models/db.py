"""Engine and unit of work.

`session_scope()` is the one unit of work of a request, command or task: it commits on
success, rolls back on error, and only then runs the callbacks registered with
`after_commit()` (enqueueing tasks, sending emails), so no side effect ever escapes a
transaction that did not commit.

SQLite (the embedded default) gets foreign keys, WAL and a busy timeout; write units of
work start with `BEGIN IMMEDIATE`, SQLite's equivalent of locking the rows we will change,
so two writers never interleave a check and an insert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from models.config import get_settings

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_bind_override: Connection | None = None

AFTER_COMMIT_KEY = "after_commit_callbacks"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # We issue BEGIN ourselves (below) so SQLite locks at the right moment.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 15000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


NOT_MIGRATED = "database not migrated: run `studioctl db upgrade`"


def make_engine(url: str, *, create: bool = False, **kwargs) -> Engine:
    """Create an engine for `url` with this project's settings for its dialect.

    `hide_parameters`: error messages and logs never carry the bound values (emails, tokens).
    A SQLite file is only created by the migrations (`create=True`): anything else opening a
    database that does not exist fails (`is_not_migrated`) instead of leaving an empty file.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        connect_args: dict = {"check_same_thread": False, "timeout": 15}
        path = sa.engine.make_url(url).database
        if not create and path and path != ":memory:" and not path.startswith("file:"):
            url = f"sqlite:///file:{path}?mode=rw&uri=true"  # open, never create
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return sa.create_engine(url, pool_pre_ping=True, pool_recycle=1800, **kwargs)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: `DATABASE_URL`)."""
    url = url or get_settings().DATABASE_URL
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (after fork, between tests, at exit)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def set_bind_override(connection: Connection | None) -> None:
    """Tests: run every unit of work inside `connection`'s outer transaction (rolled back later)."""
    global _bind_override
    _bind_override = connection


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Run `callback` once the unit of work owning `session` has committed (never on rollback)."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


def _new_session(write: bool) -> Session:
    if _bind_override is not None:
        return Session(bind=_bind_override, join_transaction_mode="create_savepoint", expire_on_commit=False)
    engine = get_engine()
    if engine.dialect.name == "sqlite" and write:
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    return Session(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(*, write: bool = True) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, then run after-commit callbacks.

    `write=False` marks a read-only unit of work (SQLite then takes no write lock).
    """
    session = _new_session(write)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop(AFTER_COMMIT_KEY, None)
        raise
    finally:
        callbacks = session.info.pop(AFTER_COMMIT_KEY, [])
        session.close()
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the periodic reconciliation jobs pick up what failed here
            log.exception("after-commit callback failed; reconciliation will retry it")


def is_not_migrated(error: BaseException) -> bool:
    """True when a database error means the schema was never made: a missing table
    (PostgreSQL's undefined_table, SQLite's "no such table") or a SQLite file that does not
    exist (opened without creating it)."""
    orig = getattr(error, "orig", None) or error
    if getattr(orig, "sqlstate", None) == "42P01":  # psycopg: undefined_table
        return True
    text = str(orig).lower()
    return "no such table" in text or "unable to open database file" in text


def ping() -> None:
    """Raise if the database cannot answer `SELECT 1`."""
    with session_scope(write=False) as session:
        session.exec(sa.select(1)).one()  # type: ignore[call-overload]


def is_postgres(session: Session) -> bool:
    """True when `session` talks to PostgreSQL."""
    return session.get_bind().dialect.name == "postgresql"


def lock_row(session: Session, model, row_id: int):
    """Row `row_id` of `model` read afresh and locked until the unit of work ends, or None.

    PostgreSQL: `SELECT ... FOR UPDATE`. SQLite: a write unit of work began IMMEDIATE and
    already holds the database's write lock. Either way a state check made on the row
    returned is not overtaken by another transaction before this one commits.
    """
    statement = sa.select(model).where(model.id == row_id)
    if is_postgres(session):
        statement = statement.with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).first()
