"""The PostgreSQL and Redis on 127.0.0.1, and databases built the way production builds them.

    with fresh_pg_database("studio_bench") as url:   # created, `alembic upgrade head`, dropped after
        ...

`STUDIO_TEST_PG_URL` (an admin connection, trust auth as `postgres` by default) and
`STUDIO_TEST_REDIS_URL` point elsewhere. Used by the test fixtures and the benchmarks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.processes import port_open

PG_ADMIN_URL = os.environ.get("STUDIO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("STUDIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def postgres_available() -> bool:
    """True when the test PostgreSQL answers on 127.0.0.1:5432."""
    return port_open(5432)


def redis_available() -> bool:
    """True when the test Redis answers on 127.0.0.1:6379."""
    return port_open(6379)


def migrate(url: str) -> None:
    """Build the schema exactly as production does: `alembic upgrade head`."""
    from alembic import command

    from migrations import alembic_config

    command.upgrade(alembic_config(url), "head")


def create_pg_database(prefix: str = "studio_test") -> str:
    """Create a fresh, empty PostgreSQL database and return its URL."""
    import sqlalchemy as sa

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    """Drop a database made by `create_pg_database` (terminating stray connections)."""
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@contextmanager
def fresh_pg_database(prefix: str = "studio_test") -> Iterator[str]:
    """A fresh PostgreSQL database built by `alembic upgrade head`; on exit this process's
    engines are disposed of and the database is dropped."""
    url = create_pg_database(prefix)
    try:
        migrate(url)
        yield url
    finally:
        try:
            from models.db import dispose_engines

            dispose_engines()
        finally:
            drop_pg_database(url)
