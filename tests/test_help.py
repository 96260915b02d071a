"""Every command and group of `studioctl`, including ones other modules add, has help text
with an example; and `--help` never loads the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from studioctl.main import app

runner = CliRunner()


def _walk(command, path=()):
    """Every command below `command`, loading lazily registered groups as the CLI would."""
    yield path, command
    if hasattr(command, "list_commands"):  # a group (Typer ships its own click)
        context = command.context_class(command, info_name=path[-1] if path else "studioctl")
        for name in command.list_commands(context):
            yield from _walk(command.get_command(context, name), (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))


def test_the_tree_covers_the_admin_groups():
    paths = {" ".join(path) for path, _ in COMMANDS}
    for expected in (
        "teachers add",
        "timeslots publish",
        "semesters closures add",
        "enrollments assign",
        "attendance mark",
        "makeups book",
        "dashboard today",
        "export",
        "term-preview",
    ):
        assert expected in paths


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda path: " ".join(path) or "studioctl")
def test_help_has_an_example(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output, f"`studioctl {' '.join(path)} --help` shows no example"


def test_help_imports_no_heavy_module():
    code = (
        "import sys; from studioctl.main import app; from typer.testing import CliRunner;"
        "CliRunner().invoke(app, ['--help']);"
        "print(','.join(m for m in ('sqlmodel', 'sqlalchemy', 'stripe', 'huey', 'flask') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
