"""Alembic migrations: the only way the schema is made (tests too)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None, connection=None):
    """An Alembic Config pointing at this folder; `url`/`connection` override DATABASE_URL."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
