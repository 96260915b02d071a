"""Alembic environment: our metadata only (Huey's tables are never touched), batch mode on SQLite."""

from __future__ import annotations

from alembic import context

from models.tables import metadata

config = context.config


def include_name(name, type_, parent_names):
    """Only our tables: anything else in the database (Huey's storage, extensions) is left alone."""
    if type_ == "table":
        return name in metadata.tables
    return True


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection) -> None:
    """Run the migrations on `connection`. On SQLite, batch mode rebuilds a table (create new,
    copy, drop old, rename): with foreign keys enforced, dropping the old table would cascade
    to the rows referencing it (attendance of an enrollment) or be refused (RESTRICT). So
    they are off during the migration — the pragma only takes effect outside a transaction —
    and every reference is checked afterwards."""
    sqlite = connection.dialect.name == "sqlite" and not connection.in_transaction()

    def pragma(sql: str) -> list:
        # On the DBAPI connection (autocommit): through SQLAlchemy it would begin a transaction.
        cursor = connection.connection.cursor()
        try:
            return cursor.execute(sql).fetchall()
        finally:
            cursor.close()

    if sqlite:
        pragma("PRAGMA foreign_keys = OFF")
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = pragma("PRAGMA foreign_key_check")
            if broken:
                raise RuntimeError(f"the migration left {len(broken)} broken reference(s), e.g. {broken[0]}")
    finally:
        if sqlite:
            pragma("PRAGMA foreign_keys = ON")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from models.config import get_settings
    from models.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or get_settings().DATABASE_URL
    engine = make_engine(url, create=True)  # the one place a SQLite file may be created
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    from models.config import get_settings

    url = config.get_main_option("sqlalchemy.url") or get_settings().DATABASE_URL
    context.configure(url=url, target_metadata=metadata, literal_binds=True, include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
