"""The schema comes only from migrations: up, down to nothing, up again, and no drift."""

import pytest
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


def _slot_dates_roundtrip(url: str) -> None:
    """0005 on a populated database: successive live enrollments of one slot are taken and an
    overlap refused by the database itself; the downgrade refuses while a slot holds two
    (the old schema cannot), then goes through once one is ended, `late_cancel` becoming a
    no-show; and the rule is back after upgrading again (SQLite: the triggers were made anew)."""
    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = sa.create_engine(url)
    _populate_at_baseline(engine)
    command.upgrade(config, "0005")
    enrollment = (
        "INSERT INTO enrollment (id, student_id, timeslot_id, instrument_id, status, offline, start_date, created_at, updated_at)"
        " VALUES ({id}, 2, 1, 1, 'active', true, '{start}', '2026-09-01 10:00:00', '2026-09-01 10:00:00')"
    )

    def overlap_refused() -> None:
        with pytest.raises(sa.exc.IntegrityError, match="ex_enrollment_live_slot_dates"):
            with engine.begin() as connection:
                connection.exec_driver_sql(enrollment.format(id=9, start="2026-11-23"))

    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE enrollment SET end_date = '2026-11-30' WHERE id = 1")
        connection.exec_driver_sql(
            "INSERT INTO student (id, payee_id, name, created_at) VALUES (2, 1, 'T', '2026-09-01 10:00:00')"
        )
        connection.exec_driver_sql(enrollment.format(id=2, start="2026-12-07"))
        connection.exec_driver_sql(
            "INSERT INTO attendance (id, enrollment_id, lesson_date, status, marked_at)"
            " VALUES (2, 1, '2026-09-14', 'late_cancel', '2026-09-14 17:00:00')"
        )
    overlap_refused()
    with pytest.raises(RuntimeError, match=r"timeslot\(s\) 1 hold more than one live enrollment"):
        command.downgrade(config, "0004")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE enrollment SET status = 'cancelled' WHERE id = 2")
    command.downgrade(config, "0004")
    assert _count(engine, "enrollment") == 2
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT status FROM attendance WHERE id = 2").scalar() == "no_show"
    command.upgrade(config, "head")
    overlap_refused()
    engine.dispose()


def test_the_slot_date_rule_migrates_up_and_down_with_data(engine_name, tmp_path):
    if engine_name == "sqlite":
        _slot_dates_roundtrip(f"sqlite:///{tmp_path / 'slot_dates.db'}")
        return
    url = create_pg_database("studio_mig_dates")
    try:
        _slot_dates_roundtrip(url)
    finally:
        drop_pg_database(url)
