"""Issue 11, identity and sign-in: linking only a verified email or an admin's invite (2), a
JWKS that is slow or unreachable (7), calendar-token rotation (10), calendar URLs from
PUBLIC_BASE_URL (11), size-checked claims (15)."""

from __future__ import annotations

import pytest

from models.config import ConfigError, load_settings
from tests.support.api import bearer, make_app, register

# 11. The calendar URL ---------------------------------------------------------------------


def test_item_11_calendar_url_comes_from_public_base_url_not_the_host_header(db, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.studio.example/v1/")
    client = make_app().test_client()
    family = register(client, "user-host", "host@family.test")
    body = client.get("/parent/payee", headers={**family.headers, "Host": "evil.example"}).get_json()
    assert body["calendar_url"].startswith("https://api.studio.example/v1/parent/calendar.ics?token=")
    assert "evil.example" not in body["calendar_url"]


def test_item_11_unset_public_base_url_is_the_local_serve_address(client, family_a):
    body = client.get("/parent/payee", headers={**family_a.headers, "Host": "evil.example"}).get_json()
    assert body["calendar_url"].startswith("http://127.0.0.1:8000/parent/calendar.ics?token=")
    # The URL handed out works.
    assert client.get(body["calendar_url"]).status_code == 200


@pytest.mark.parametrize("value", ["ftp://api.studio.example", "https://api.studio.example/?a=1", "api.studio.example"])
def test_item_11_a_malformed_public_base_url_is_one_config_line(value):
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load_settings(PUBLIC_BASE_URL=value)


def test_item_11_wrong_host_calendar_urls_are_not_in_put_either(client):
    body = client.put("/parent/payee", json={"name": "Hal"}, headers={**bearer("user-h", "h@family.test"), "Host": "x.test"})
    assert body.get_json()["calendar_url"].startswith("http://127.0.0.1:8000/")
