"""The schema comes only from migrations: up, down to nothing, up again, and no drift."""

import sqlalchemy as sa
from alembic import command

from migrations import alembic_config
from models.tables import metadata
from tests.support.databases import create_pg_database, drop_pg_database


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


def _count(engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar()


def _populate_at_baseline(engine) -> None:
    """One of each row a rebuilt table is referenced by, written with the 0001 schema."""
    rows = [
        "INSERT INTO instrument (id, name) VALUES (1, 'piano')",
        "INSERT INTO teacher (id, name, email, active, bio, created_at) VALUES (1, 'T', 't@s.test', true, NULL, '2026-09-01 10:00:00')",
        "INSERT INTO payee (id, email, name, calendar_token, created_at, updated_at) VALUES (1, 'p@f.test', 'P', 'tok', '2026-09-01 10:00:00', '2026-09-01 10:00:00')",
        "INSERT INTO student (id, payee_id, name, created_at) VALUES (1, 1, 'S', '2026-09-01 10:00:00')",
        "INSERT INTO timeslot (id, teacher_id, weekday, start_minute, active, created_at) VALUES (1, 1, 0, 960, true, '2026-09-01 10:00:00')",
        "INSERT INTO enrollment (id, student_id, timeslot_id, instrument_id, status, offline, start_date, created_at, updated_at)"
        " VALUES (1, 1, 1, 1, 'active', true, '2026-09-07', '2026-09-01 10:00:00', '2026-09-01 10:00:00')",
        "INSERT INTO attendance (id, enrollment_id, lesson_date, status, marked_at) VALUES (1, 1, '2026-09-07', 'excused', '2026-09-07 17:00:00')",
    ]
    with engine.begin() as connection:
        for sql in rows:
            connection.exec_driver_sql(sql)


def _roundtrip_with_data(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = sa.create_engine(url)
    _populate_at_baseline(engine)
    counts = {table: _count(engine, table) for table in ("payee", "student", "enrollment", "attendance")}
    command.upgrade(config, "head")
    assert {table: _count(engine, table) for table in counts} == counts  # nothing cascaded away
    command.downgrade(config, "0001")
    assert {table: _count(engine, table) for table in counts} == counts
    command.upgrade(config, "head")
    assert {table: _count(engine, table) for table in counts} == counts
    engine.dispose()


def test_upgrading_a_populated_database_keeps_every_row(engine_name, tmp_path):
    """Batch mode rebuilds tables on SQLite: the attendance of a rebuilt enrollment table must
    survive (foreign keys cascade on a table drop), and the downgrade must not be refused."""
    if engine_name == "sqlite":
        _roundtrip_with_data(f"sqlite:///{tmp_path / 'populated.db'}")
        return
    url = create_pg_database("studio_mig_data")
    try:
        _roundtrip_with_data(url)
    finally:
        drop_pg_database(url)
