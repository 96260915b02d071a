"""The OpenAPI document checked into the repository (`openapi.json`), for the app developers
to diff between versions: `make openapi` writes it from the code; `tests/test_openapi_file.py`
fails when the code's document drifts from it.

    python -m webapi.openapi_file [--check]

The document depends on the code only, not on the settings, so placeholder secrets do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "openapi.json"
PLACEHOLDERS = {
    "JWT_SECRET": "openapi-file-placeholder-secret-0123456789",
    "SUPABASE_JWT_SECRET": "openapi-placeholder-0123456789abcdef",
}


def render() -> str:
    """The code's OpenAPI document as the file holds it (sorted keys, two-space indent)."""
    for name, value in PLACEHOLDERS.items():
        os.environ.setdefault(name, value)
    from webapi import create_app

    return json.dumps(create_app().api_doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PATH.exists() or PATH.read_text(encoding="utf-8") != text:
            print(f"{PATH.name} is not the code's OpenAPI document: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    PATH.write_text(text, encoding="utf-8")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
