"""The schema comes only from migrations: up, down to nothing, up again, and no drift."""

import sqlalchemy as sa
from alembic import command

from migrations import alembic_config
from models.tables import metadata
from tests.conftest import create_pg_database, drop_pg_database


def _roundtrip(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.check(config)  # raises when models and migrations disagree
    engine = sa.create_engine(url)
    assert set(metadata.tables) <= set(sa.inspect(engine).get_table_names())
    command.downgrade(config, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert set(metadata.tables) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_roundtrip(engine_name, tmp_path):
    if engine_name == "sqlite":
        _roundtrip(f"sqlite:///{tmp_path / 'roundtrip.db'}")
        return
    url = create_pg_database("studio_mig")
    try:
        _roundtrip(url)
    finally:
        drop_pg_database(url)


def test_foreign_tables_are_left_alone(tmp_path):
    """Huey's SQLite tables (or anything else not ours) survive a downgrade and cause no drift."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE task (id INTEGER PRIMARY KEY, queue TEXT)")
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.check(config)
    command.downgrade(config, "base")
    assert "task" in sa.inspect(engine).get_table_names()
    engine.dispose()
