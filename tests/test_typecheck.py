"""The type check is a contract check: mypy refuses a Stripe call with a parameter today's API
does not have (the SetupIntent's old `payment_method_types`). `make typecheck` (run by `make
test` and CI before the suite) checks `workers/` itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> tuple[str, int]:
    from mypy import api

    # The checkout's cache (`make typecheck` runs first): stripe's types are read once, not per test.
    stdout, stderr, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"), *args]
    )
    return stdout + stderr, status


@pytest.mark.slow
def test_mypy_refuses_the_old_setup_intent_parameter(tmp_path):
    snippet = tmp_path / "old_call.py"
    snippet.write_text(
        textwrap.dedent("""
        from stripe.params import SetupIntentCreateParams

        params: SetupIntentCreateParams = {"customer": "cus_1", "usage": "off_session", "payment_method_types": ["card"]}
        good: SetupIntentCreateParams = {"customer": "cus_1", "usage": "off_session", "allowed_payment_method_types": ["card"]}
    """)
    )
    output, status = _mypy(str(snippet))
    assert status == 1
    assert '"payment_method_types"' in output and output.count("error:") == 1, output
