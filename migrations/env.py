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


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from models.db import make_engine
    from models.config import get_settings

    url = config.get_main_option("sqlalchemy.url") or get_settings().DATABASE_URL
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
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
