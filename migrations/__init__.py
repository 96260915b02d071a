"""Alembic migrations: the only way the schema is made (tests too)."""

from __future__ import annotations

import ast
import functools
import threading
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


_HEADS_LOCK = threading.Lock()


@functools.cache
def head_revisions() -> frozenset[str]:
    """The revisions no other migration revises (`alembic heads`), read from the version files'
    `revision` / `down_revision` lines without importing Alembic (~0.2 s of every process start:
    the database layer checks the schema against these before its first unit of work).

    Read once per process, under a lock: the first units of work of a threaded server arrive
    together, and CPython 3.11's `ast.parse` from two threads at once can fail ("AST
    constructor recursion depth mismatch"; `functools.cache` does not serialise first calls)."""
    with _HEADS_LOCK:
        return _read_heads()


def _read_heads() -> frozenset[str]:
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted((HERE / "versions").glob("*.py")):
        for name, value in _assignments(path):
            if name == "revision":
                revisions.add(value)
            elif name == "down_revision" and value is not None:
                revised.update([value] if isinstance(value, str) else value)
    return frozenset(revisions - revised)


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision these migrations know (a database at another one was migrated by a newer
    release), read from the version files like `head_revisions`."""
    return frozenset(
        value for path in (HERE / "versions").glob("*.py") for name, value in _assignments(path) if name == "revision"
    )


def _assignments(path: Path):
    """(name, literal value) of the module-level `name = literal` lines of a version file."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            yield target.id, ast.literal_eval(value)
