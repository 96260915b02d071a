"""The admin CLI is a transport: no SQL and no direct row writes in `studioctl/`.

Reads go through read models and writes through audited domain operations in `models/`;
a command only opens its unit of work (`session_scope`) and hands the session on. The scan
reads the source with the AST, so a comment or a help text mentioning `select(` is no hit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STUDIOCTL = Path(__file__).resolve().parents[1] / "studioctl"
# Query building and unit-of-work methods that belong in `models/`.
# (`session.add(...)` and the like are caught as uses of the session itself.)
QUERY_CALLS = frozenset(
    {
        "select",
        "text",
        "where",
        "order_by",
        "exec",
        "execute",
        "scalars",
        "scalar",
        "query",
        "add_all",
        "merge",
        "flush",
        "commit",
        "rollback",
        "begin_nested",
    }
)
# The one ORM import a command may make: the worker's warm-up configures the mappers before forking.
ALLOWED_IMPORTS = frozenset({("sqlalchemy.orm", "configure_mappers")})
SESSION_NAMES = frozenset({"session", "unit"})
# Objects of the CLI itself whose attributes a command may set (a lazily loaded click command's
# name; gunicorn's `util.write_error`, replaced by `serve` so its refusals are problem+json).
CLI_OBJECTS = frozenset({"command", "util"})


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def sql_in(source: str, filename: str = "<source>") -> list[str]:
    """Where `source` builds a query, uses a session itself or writes a row's attribute."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            name = _called_name(node)
            if name in QUERY_CALLS:
                found.append(f"{where} calls {name}()")
            if name == "setattr":
                found.append(f"{where} calls setattr()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in SESSION_NAMES:
            found.append(f"{where} uses {node.value.id}.{node.attr} (hand the session to a models function)")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(item, ast.Attribute) and not _is_cli_object(item.value):
                        found.append(f"{where} assigns .{item.attr} (an audited operation changes rows)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("sqlmodel", "sqlalchemy"):
                    found.append(f"{where} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sqlmodel", "sqlalchemy"):
            for alias in node.names:
                if (node.module, alias.name) not in ALLOWED_IMPORTS:
                    found.append(f"{where} imports {alias.name} from {node.module}")
    return found


def _is_cli_object(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in CLI_OBJECTS


@pytest.mark.parametrize("path", sorted(STUDIOCTL.glob("*.py")), ids=lambda path: path.name)
def test_no_sql_or_direct_row_writes_in_the_cli(path):
    assert sql_in(path.read_text(), path.name) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "from sqlmodel import select\nrows = session.exec(select(Plan)).all()",
        "rows = session.execute(sa.text('select 1'))",
        "plan = session.get(Plan, 1)",
        "event.status = 'received'\nsession.add(event)",
        "event.status, event.error = 'received', None",
        "statement = query.where(Plan.active)",
        "import sqlalchemy as sa",
        "setattr(event, 'status', 'received')",
    ],
)
def test_the_scan_finds_sql_and_row_writes(snippet):
    assert sql_in(snippet)


def test_the_scan_lets_units_of_work_and_domain_calls_through():
    source = (
        "from models.db import session_scope\n"
        "from sqlalchemy.orm import configure_mappers\n"
        "with session_scope(write=False) as session:\n"
        "    rows = list_plans(session)\n"
        "    seen = set()\n"
        "    seen.add(1)\n"
        "status = 'received'\n"
        "view['status'] = status\n"
        "command.name = 'plans'\n"
    )
    assert sql_in(source) == []
