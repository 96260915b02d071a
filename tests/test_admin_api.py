"""The read-only admin API (issue 12, item 4): who gets in, what each route answers (the
read model the CLI uses), paging, the audit row of every request, refusals as problem+json."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import jwt
import pytest
from sqlmodel import select

from models.audit import AuditLog, record_audit
from models.billing import finish_stripe_event, record_stripe_event
from models.booking import assign_enrollment, hold_slot
from models.clock import studio_today
from models.outbox import add_dead_letter, queue_email, resolve_dead_letter
from tests import factories
from tests.support.api import assert_problem, bearer, make_app
from tests.support.jwt_tokens import backend_token, supabase_token
from tests.support.settings import JWT_SECRET
from webapi.security import OUR_AUDIENCE, OUR_ISSUER

ADMIN_EMAIL = "admin@studio.test"  # ADMIN_EMAIL_ALLOWLIST of tests/support/settings.py
ADMIN = {"Authorization": f"Bearer {backend_token('boss', ADMIN_EMAIL, role='admin', email_verified=True)}"}
ROUTES = [
    "/admin/dashboard/today",
    "/admin/dashboard/provisionals",
    "/admin/dashboard/payments",
    "/admin/emails",
    "/admin/deadletters",
    "/admin/stripe/events",
    "/admin/audit",
]
WEEK = timedelta(days=7)


def _get(client, path: str, headers=ADMIN, **params):
    return client.get(path, query_string=params, headers=headers)


def _ok(client, path: str, **params) -> dict:
    response = _get(client, path, **params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _walk(client, path: str, **params) -> tuple[list[dict], int]:
    """Every item of a list, page after page by `next_cursor`, and the number of pages."""
    items, cursor, pages = [], None, 0
    while True:
        body = _ok(client, path, **params, **({"cursor": cursor} if cursor else {}))
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def _exchange(client, token: str) -> tuple[str, dict]:
    response = client.post("/auth/exchange", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    ours = response.get_json()["access_token"]
    return ours, jwt.decode(ours, JWT_SECRET, algorithms=["HS256"], audience=OUR_AUDIENCE, issuer=OUR_ISSUER)


# Who gets in -------------------------------------------------------------------------------


def test_the_exchange_grants_the_admin_role_only_to_a_verified_allowlisted_email(client):
    token, claims = _exchange(client, supabase_token("boss", "Admin@Studio.test", email_verified=True))
    assert (claims["role"], claims["email_verified"]) == ("admin", True)
    assert _get(client, "/admin/emails", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    # Anyone can sign up with the admin's address; until the provider vouches for it, no role.
    token, claims = _exchange(client, supabase_token("someone", ADMIN_EMAIL))
    assert (claims["role"], claims["email_verified"]) == ("parent", False)
    assert_problem(_get(client, "/admin/emails", headers={"Authorization": f"Bearer {token}"}), 403, "admin-required")
    token, claims = _exchange(client, supabase_token("someone", ADMIN_EMAIL, user_metadata={"email_verified": False}))
    assert claims["role"] == "parent"


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_is_401_without_a_token_and_403_for_a_parent(client, path):
    body = assert_problem(client.get(path), 401, "missing-token")
    assert body["instance"] == path
    assert_problem(_get(client, path, headers=bearer("user-a", "a@family.test")), 403, "admin-required")


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "admin", "email_verified": False},  # minted before the exchange asked for a verified email
        {"role": "admin"},  # no email_verified claim at all
        {"role": "parent", "email_verified": True},  # the allow-listed address, without the role
    ],
)
def test_a_token_without_a_verified_admin_email_and_role_is_403(client, claims):
    headers = {"Authorization": f"Bearer {backend_token('boss', ADMIN_EMAIL, **claims)}"}
    assert_problem(_get(client, "/admin/audit", headers=headers), 403, "admin-required")


def test_an_admin_token_stops_working_when_the_email_leaves_the_allowlist(db, monkeypatch):
    monkeypatch.setenv("ADMIN_EMAIL_ALLOWLIST", "other-admin@studio.test")
    assert_problem(_get(make_app().test_client(), "/admin/emails"), 403, "admin-required")


def test_refusals_write_no_audit_row(client, session):
    client.get("/admin/emails")
    _get(client, "/admin/emails", headers=bearer("user-a", ADMIN_EMAIL))
    assert session.exec(select(AuditLog).where(AuditLog.action == "admin.read")).all() == []


# What each route answers --------------------------------------------------------------------


@pytest.fixture
def lessons(session) -> date:
    """Four Monday lessons (offline enrollments) of one family, 15:00…16:30; the Monday of the
    week after next (the Monday after it is a closure)."""
    today = studio_today()
    monday = today + timedelta(days=7 + (7 - today.weekday()) % 7)
    teacher = factories.teacher(session, name="Ada", instruments=("piano",))
    family = factories.payee(session, name="Garcia")
    factories.semester(session, starts=today - timedelta(days=7), ends=today + timedelta(days=100), closures=(monday + WEEK,))
    for start, name in (("16:30", "Dan"), ("15:00", "Ana"), ("16:00", "Cy"), ("15:30", "Bo")):
        slot = factories.timeslot(session, teacher_row=teacher, weekday=0, start=start)
        student = factories.student(session, payee_row=family, name=name)
        assign_enrollment(
            session, student_id=student.id, timeslot_id=slot.id, instrument="piano", plan=None, offline=True, actor="admin"
        )
    session.commit()
    return monday


def test_today_pages_the_days_lessons_in_start_order(client, lessons):
    body = _ok(client, "/admin/dashboard/today", date=lessons.isoformat(), limit=3)
    assert (body["date"], body["closed"], len(body["items"])) == (lessons.isoformat(), False, 3)
    assert body["items"][0]["starts_at"].startswith(f"{lessons.isoformat()}T15:00:00-0")
    items, pages = _walk(client, "/admin/dashboard/today", date=lessons.isoformat(), limit=1)
    assert [(item["start"], item["student"], item["kind"]) for item in items] == [
        ("15:00", "Ana", "lesson"),
        ("15:30", "Bo", "lesson"),
        ("16:00", "Cy", "lesson"),
        ("16:30", "Dan", "lesson"),
    ]
    assert pages == 4
    closed = _ok(client, "/admin/dashboard/today", date=(lessons + WEEK).isoformat())
    assert (closed["closed"], closed["items"], closed["next_cursor"]) == (True, [], None)


def test_provisionals_page_by_expiry_then_id_exactly_once(client, session):
    teacher = factories.teacher(session, instruments=("piano",))
    factories.plan(session, frequency="monthly")
    now = datetime.now(UTC)
    held = []
    # Two holds share each expiry: the cursor's id breaks the tie.
    for index, minutes_ago in enumerate((5, 20, 5, 20, 12)):
        family = factories.payee(session)
        student = factories.student(session, payee_row=family, name=f"Kid {index}")
        slot = factories.timeslot(session, teacher_row=teacher, weekday=index % 7, start="16:00")
        held.append(
            hold_slot(
                session,
                payee=family,
                student_id=student.id,
                timeslot_id=slot.id,
                instrument="piano",
                plan="monthly",
                actor="payee",
                now=now - timedelta(minutes=minutes_ago),
            )
        )
    session.commit()
    expected = [hold.id for hold in sorted(held, key=lambda hold: (hold.provisional_expires_at, hold.id))]
    items, pages = _walk(client, "/admin/dashboard/provisionals", limit=2)
    assert [item["id"] for item in items] == expected and pages == 3
    assert items[0]["status"] == "provisional" and 9 * 60 < items[0]["seconds_left"] <= 10 * 60
    assert all("client_secret" not in key for item in items for key in item)


def test_payments_page_the_events_and_carry_every_failure(client, session):
    events = []
    for number in range(5):
        event = record_stripe_event(session, event_id=f"evt_{number}", type="invoice.paid", payload={"secret": "whsec_x"})
        events.append(event)
    finish_stripe_event(session, events[0], status="failed", error="customer missing")
    finish_stripe_event(session, events[3], status="processed")
    session.commit()
    items, pages = _walk(client, "/admin/dashboard/payments", limit=2, days=7)
    assert [item["stripe_event_id"] for item in items] == [f"evt_{number}" for number in (4, 3, 2, 1, 0)]
    assert pages == 3
    first_page = _ok(client, "/admin/dashboard/payments", limit=2)
    assert first_page["days"] == 7
    # The failure is the oldest event, on the last page, and listed on every page.
    assert first_page["failures"] == [
        {"kind": "stripe_event", "id": events[0].id, "what": "invoice.paid", "error": "customer missing"}
    ]
    assert "whsec_x" not in str(first_page)


def test_emails_page_newest_first_and_filter_by_status(client, session):
    ids = [
        queue_email(
            session, template="admin_alert", recipient=f"r{n}@family.test", context={"message": "m"}, dedupe_key=f"k{n}"
        ).id
        for n in range(5)
    ]
    session.commit()
    items, pages = _walk(client, "/admin/emails", limit=2)
    assert [item["id"] for item in items] == ids[::-1] and pages == 3
    assert items[0]["recipient"] == "r4@family.test" and items[0]["status"] == "queued"
    assert "context" not in items[0]  # the email's content (links, names) stays in the outbox
    assert _ok(client, "/admin/emails", status="failed")["items"] == []


def test_deadletters_list_the_open_ones_unless_asked(client, session):
    letters = [add_dead_letter(session, kind="send_email", payload={"email_id": n}, error=f"boom {n}") for n in range(3)]
    resolve_dead_letter(session, letters[1])
    session.commit()
    items, _ = _walk(client, "/admin/deadletters", limit=1)
    assert [(item["id"], item["payload"]) for item in items] == [
        (letters[2].id, {"email_id": 2}),
        (letters[0].id, {"email_id": 0}),
    ]
    every, pages = _walk(client, "/admin/deadletters", limit=2, include_resolved="true")
    assert [item["id"] for item in every] == [letter.id for letter in letters[::-1]] and pages == 2
    assert every[1]["resolved_at"] is not None


def test_stripe_events_page_without_their_payloads(client, session):
    for number in range(3):
        record_stripe_event(
            session, event_id=f"evt_{number}", type="payment_intent.requires_action", payload={"client_secret": "pi_1_secret_2"}
        )
    session.commit()
    items, pages = _walk(client, "/admin/stripe/events", limit=2)
    assert [item["stripe_event_id"] for item in items] == ["evt_2", "evt_1", "evt_0"] and pages == 2
    assert "payload" not in items[0] and "pi_1_secret_2" not in str(items)
    assert _walk(client, "/admin/stripe/events", status="failed") == ([], 1)


def test_audit_filters_by_entity_and_since_and_redacts_credentials(client, session):
    payee = factories.payee(session)
    old = record_audit(session, actor="admin", action="payee.update", entity=payee, after={"calendar_token": "cal-secret"})
    session.flush()
    old.created_at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    record_audit(session, actor="admin", action="teacher.add", entity="teacher", entity_id=1, after={"name": "Ada"})
    session.commit()

    rows = _ok(client, "/admin/audit", entity="payee")["items"]
    assert [(row["action"], row["after"]) for row in rows] == [("payee.update", {"calendar_token": "[redacted]"})]
    assert "cal-secret" not in str(_walk(client, "/admin/audit", limit=1)[0])
    assert _ok(client, "/admin/audit", entity="payee", since="2026-01-02")["items"] == []
    assert len(_ok(client, "/admin/audit", entity="payee", since="2026-01-01T12:00:00Z")["items"]) == 1
    assert len(_ok(client, "/admin/audit", entity="payee", since="2026-01-01T12:00:01+00:00")["items"]) == 0
    # A day is the studio's (New York): 2026-01-01 starts at 05:00 UTC, before the row.
    assert len(_ok(client, "/admin/audit", entity="payee", since="2026-01-01")["items"]) == 1
    assert len(_ok(client, "/admin/audit", entity="payee", since="0001-01-01T00:00:00+14:00")["items"]) == 1


# The audit row of each request ----------------------------------------------------------------


def test_every_admin_request_is_audited_with_the_admins_email(client, session):
    for path in ROUTES:
        assert _get(client, path, limit=5).status_code == 200
    assert _get(client, "/admin/audit", since="yesterday").status_code == 422  # refused, still recorded
    rows = session.exec(select(AuditLog).where(AuditLog.action == "admin.read").order_by(AuditLog.id)).all()
    assert [row.entity for row in rows] == [*ROUTES, "/admin/audit"]
    assert {row.actor for row in rows} == {f"admin:{ADMIN_EMAIL}"}
    assert rows[0].after == {"email": ADMIN_EMAIL, "method": "GET", "query": "limit=5"}
    assert rows[-1].after["query"] == "since=yesterday"


def test_a_long_admin_email_is_cut_to_the_actor_column_and_kept_whole_in_the_row(db, monkeypatch, session):
    email = "the-studio-administrator-with-a-long-name@music-studio-example.test"
    monkeypatch.setenv("ADMIN_EMAIL_ALLOWLIST", email)
    headers = {"Authorization": f"Bearer {backend_token('boss', email, role='admin', email_verified=True)}"}
    assert _get(make_app().test_client(), "/admin/emails", headers=headers).status_code == 200
    [row] = session.exec(select(AuditLog).where(AuditLog.action == "admin.read")).all()
    assert row.actor == f"admin:{email}"[:64] and row.after["email"] == email


# Refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, params, field",
    [
        ("/admin/dashboard/today", {"date": "26/10/2026"}, "date"),
        ("/admin/dashboard/today", {"date": "2026-02-30"}, "date"),
        ("/admin/dashboard/today", {"date": "86400"}, "date"),  # pydantic alone reads Unix time
        ("/admin/dashboard/today", {"cursor": "-1"}, "cursor"),
        ("/admin/dashboard/provisionals", {"cursor": "12"}, "cursor"),
        ("/admin/dashboard/payments", {"days": "0"}, "days"),
        ("/admin/emails", {"status": "lost"}, "status"),
        ("/admin/emails", {"limit": "0"}, "limit"),
        ("/admin/emails", {"limit": "101"}, "limit"),
        ("/admin/stripe/events", {"status": "sent"}, "status"),
        ("/admin/deadletters", {"include_resolved": "maybe"}, "include_resolved"),
        ("/admin/audit", {"since": "yesterday"}, "since"),
        ("/admin/audit", {"since": "1767225600"}, "since"),
        ("/admin/audit", {"since": "2026-01-01T10:00:00"}, "since"),  # no UTC offset: ambiguous
        ("/admin/audit", {"entity": "x" * 41}, "entity"),
        ("/admin/audit", {"entity": "pay\x00ee"}, "entity"),
    ],
)
def test_bad_query_values_are_422_naming_the_field(client, path, params, field):
    body = assert_problem(_get(client, path, **params), 422, "validation-error")
    assert field in body["detail"], body


def test_a_cursor_past_the_end_is_an_empty_page(client):
    assert _ok(client, "/admin/dashboard/today", cursor="999999")["items"] == []
    assert _ok(client, "/admin/dashboard/provisionals", cursor="99999999999999999.2147483647")["items"] == []
    assert _ok(client, "/admin/dashboard/payments", cursor="0.1")["items"] == []


def test_answers_are_not_cached_and_the_routes_are_documented(client):
    assert _get(client, "/admin/emails").headers["Cache-Control"] == "no-store"
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["adminBearer"]["scheme"] == "bearer"
    for path in ROUTES:
        operation = spec["paths"][path]["get"]
        assert operation["security"] == [{"adminBearer": []}]
        assert {"200", "401", "403", "422"} <= set(operation["responses"])
        assert {parameter["name"] for parameter in operation["parameters"]} >= {"limit", "cursor"}
