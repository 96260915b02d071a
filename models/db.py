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
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from models import dispatch
from models.config import get_settings
from models.errors import DomainError

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_migrated: set[str] = set()  # the URLs whose schema was found at the migrations' head
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


class NotMigrated(DomainError):
    """The database has no schema, or one at a revision other than the migrations' head (older,
    or unknown to this code), or its SQLite file does not exist: `studioctl db upgrade` first."""

    status = 503
    type = "not-migrated"
    title = "Service unavailable"

    def __init__(self, detail: str = NOT_MIGRATED):
        super().__init__(detail)


def make_engine(url: str, *, create: bool = False, **kwargs) -> Engine:
    """Create an engine for `url` with this project's settings for its dialect.

    `hide_parameters`: error messages and logs never carry the bound values (emails, tokens).
    A SQLite file is only created by the migrations (`create=True`): anything else opening a
    database that does not exist gets `NotMigrated` instead of leaving an empty file behind
    (a mistyped path); SQLite's `mode=rw` keeps the file from being created meanwhile.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        connect_args: dict = {"check_same_thread": False, "timeout": 15}
        path = sa.engine.make_url(url).database
        must_exist = not create and path and path != ":memory:" and not path.startswith("file:")
        target: str | sa.URL = url
        if must_exist:
            target = sa.URL.create("sqlite", database=f"file:{quote(path)}", query={"mode": "rw", "uri": "true"})
        engine = sa.create_engine(target, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        if must_exist:

            @event.listens_for(engine, "do_connect")
            def _refuse_missing_file(_dialect, _record, _cargs, _cparams):
                if not os.path.exists(path):
                    raise NotMigrated()

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
        _migrated.clear()


def check_migrated(engine: Engine) -> None:
    """Raise `NotMigrated` unless the database is at the migrations' head: no `alembic_version`
    table (never migrated), no revision, an older one or one these migrations do not know (a
    newer release migrated it). Checked once per process and database, before its first unit
    of work, so every command and request says so instead of failing on a missing column."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _migrated:
        return
    from migrations import head_revisions

    try:
        with engine.connect() as connection:
            revisions = set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as error:
        if is_not_migrated(error):
            raise NotMigrated() from None
        raise
    if revisions != head_revisions():
        raise NotMigrated()
    _migrated.add(key)


def set_bind_override(connection: Connection | None) -> None:
    """Tests: run every unit of work inside `connection`'s outer transaction (rolled back later)."""
    global _bind_override
    _bind_override = connection


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Run `callback` once the unit of work owning `session` has committed (never on rollback)."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


def _new_session(write: bool, *, migrated: bool = True) -> Session:
    if write:  # a read-only unit frees no slot: `dashboard today` need not load the waiting list's watch
        dispatch.run_before_first_unit()
    if _bind_override is not None:
        return Session(bind=_bind_override, join_transaction_mode="create_savepoint", expire_on_commit=False)
    engine = get_engine()
    if migrated:
        check_migrated(engine)
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
    """True when a database error means the schema was never made (or was dropped since): a
    missing table (PostgreSQL's undefined_table, SQLite's "no such table")."""
    orig = getattr(error, "orig", None) or error
    if getattr(orig, "sqlstate", None) == "42P01":  # psycopg: undefined_table
        return True
    return "no such table" in str(orig).lower()


def violates(error: BaseException, constraint: str) -> bool:
    """True when a database error is the refusal of the rule named `constraint`: PostgreSQL
    names the constraint it checked (psycopg's `diag.constraint_name`); a SQLite trigger that
    stands for one aborts with a message starting with its name."""
    orig = getattr(error, "orig", None) or error
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None) == constraint:
        return True
    return str(orig).startswith(f"{constraint}:")


SQLITE_READONLY = 8  # the primary result code; extended ones (SQLITE_READONLY_DBMOVED...) share its low byte


def read_only_reason(error: BaseException) -> str | None:
    """The one line to show when a database error means the database refuses writes (a SQLite
    file or folder the process may not write, a PostgreSQL standby or read-only transaction),
    else None."""
    orig = getattr(error, "orig", None) or error
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == SQLITE_READONLY:
        return "database is read-only: the process may not write the SQLite file or its folder (check their permissions); nothing was changed"
    if getattr(orig, "sqlstate", None) == "25006":  # psycopg: read_only_sql_transaction
        return "database is read-only (a standby server, or default_transaction_read_only is on); nothing was changed"
    return None


def ping() -> None:
    """Raise if the database cannot answer `SELECT 1` (liveness: migrated or not)."""
    with _new_session(write=False, migrated=False) as session:
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
