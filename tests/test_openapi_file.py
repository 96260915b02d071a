"""Issue 12, item 5: `openapi.json` in the repository is the code's OpenAPI document, so the
app developers can diff versions. When this fails: `make openapi`, then review the diff."""

from __future__ import annotations

import json

from webapi import openapi_file


def test_the_checked_in_openapi_json_is_the_codes_document():
    checked_in = json.loads(openapi_file.PATH.read_text(encoding="utf-8"))
    current = json.loads(openapi_file.render())
    assert checked_in == current, "openapi.json drifted from the code's OpenAPI document: run `make openapi`"
