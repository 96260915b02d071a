"""Issue 11, identity and sign-in: linking only a verified email or an admin's invite (2), a
JWKS that is slow or unreachable (7), calendar-token rotation (10), calendar URLs from
PUBLIC_BASE_URL (11), size-checked claims (15)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.config import ConfigError, load_settings
from tests.support.api import assert_problem, bearer, make_app, register
from tests.support.cli import ok, refused, row_counts

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


# 10. Calendar-token rotation --------------------------------------------------------------


def _calendar_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _audit_rows(session, action: str) -> list[AuditLog]:
    session.expire_all()
    return list(session.scalars(sa.select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def test_item_10_parent_rotates_the_calendar_token_and_the_old_url_is_404(client, session, family_a):
    old_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
    assert client.get(_calendar_path(old_url)).status_code == 200
    rotated = client.post("/parent/calendar-token", headers=family_a.headers)
    assert rotated.status_code == 200
    new_url = rotated.get_json()["calendar_url"]
    assert new_url != old_url and new_url.startswith("http://127.0.0.1:8000/parent/calendar.ics?token=")
    assert_problem(client.get(_calendar_path(old_url)), 404, "not-found")
    assert client.get(_calendar_path(new_url)).status_code == 200
    assert client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"] == new_url
    (row,) = _audit_rows(session, "payee.rotate_calendar_token")
    assert row.actor == f"payee:{family_a.payee_id}" and row.entity_id == str(family_a.payee_id)
    tokens = {parse_qs(urlsplit(url).query)["token"][0] for url in (old_url, new_url)}
    assert row.before["calendar_token"] == row.after["calendar_token"] == "[redacted]"
    assert not any(token in repr((row.before, row.after)) for token in tokens)


def test_item_10_rotation_needs_a_registered_family(client):
    assert_problem(client.post("/parent/calendar-token"), 401)
    assert_problem(client.post("/parent/calendar-token", headers=bearer("new-user", "new@family.test")), 403, "payee-required")


def test_item_10_admin_rotates_a_familys_calendar_token(client, session, family_a):
    old_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
    result = ok("payees", "rotate-calendar-token", family_a.email)
    old_token = parse_qs(urlsplit(old_url).query)["token"][0]
    assert "rotated" in result.stdout and old_token not in result.output
    assert_problem(client.get(_calendar_path(old_url)), 404, "not-found")
    new_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
    assert new_url != old_url and client.get(_calendar_path(new_url)).status_code == 200
    assert new_url.split("token=")[1] not in result.output
    (row,) = _audit_rows(session, "payee.rotate_calendar_token")
    assert row.actor == "admin" and row.after["calendar_token"] == "[redacted]"


def test_item_10_admin_rotation_of_an_unknown_payee_changes_nothing(session, db):
    before = row_counts(session)
    refused("payees", "rotate-calendar-token", "nobody@family.test", message="no payee")
    assert row_counts(session) == before
