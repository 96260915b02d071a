"""Public discovery, health, errors as problem+json, CORS and the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from models.enrollment import Enrollment
from tests import factories
from tests.support.api import Studio, assert_problem, booking_body, make_app

NY = ZoneInfo("America/New_York")


def test_instruments_and_teachers(client, session):
    piano_teacher = factories.teacher(session, name="Clara", instruments=("piano", "guitar"))
    factories.teacher(session, name="Gone", instruments=("piano",), active=False)
    factories.instrument(session, "drums")
    names = {item["name"] for item in client.get("/public/instruments").get_json()["items"]}
    assert {"piano", "guitar", "drums"} <= names
    teachers = client.get("/public/teachers").get_json()["items"]
    assert [t["name"] for t in teachers] == ["Clara"]
    assert teachers[0] == {"id": piano_teacher.id, "name": "Clara", "bio": None, "instruments": ["guitar", "piano"]}
    assert client.get("/public/teachers?instrument=drums").get_json()["items"] == []


def test_timeslots_filters_and_availability(client, session, studio: Studio, family_a):
    guitar = factories.teacher(session, instruments=("guitar",))
    guitar_slot = factories.timeslot(session, teacher_row=guitar, weekday=2, start="10:00")
    factories.timeslot(session, teacher_row=guitar, weekday=3, start="10:00", active=False)
    session.commit()
    student = family_a.add_student(client)
    assert (
        client.post(
            "/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family_a.headers
        ).status_code
        == 202
    )

    slots = {item["id"]: item for item in client.get("/public/timeslots").get_json()["items"]}
    assert set(slots) == {studio.slot_id, *studio.other_slot_ids, guitar_slot.id}
    assert slots[studio.slot_id]["available"] is False and slots[studio.slot_id]["available_from"] is None
    # A free slot is bookable from its next lesson (tests/test_slot_dates.py: a slot held until a date).
    assert slots[guitar_slot.id]["available_from"] == slots[guitar_slot.id]["next_occurrence"][:10]
    assert slots[guitar_slot.id] | {"next_occurrence": None, "available_from": None} == {
        "id": guitar_slot.id,
        "teacher_id": guitar.id,
        "teacher_name": guitar.name,
        "instruments": ["guitar"],
        "weekday": 2,
        "start": "10:00",
        "end": "10:30",
        "available": True,
        "next_occurrence": None,
        "available_from": None,
        "location": None,
        "room": None,
    }
    available = client.get("/public/timeslots?available=true").get_json()["items"]
    assert studio.slot_id not in {item["id"] for item in available}
    taken = client.get("/public/timeslots?available=false").get_json()["items"]
    assert [item["id"] for item in taken] == [studio.slot_id]
    assert {item["id"] for item in client.get("/public/timeslots?instrument=guitar").get_json()["items"]} == {guitar_slot.id}
    assert {item["id"] for item in client.get("/public/timeslots?weekday=2").get_json()["items"]} == {guitar_slot.id}
    by_teacher = client.get(f"/public/timeslots?teacher_id={studio.teacher_id}").get_json()["items"]
    assert len(by_teacher) == 4


def test_timeslots_paginate_with_a_cursor(client, studio: Studio):
    first = client.get("/public/timeslots?limit=3").get_json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    second = client.get(f"/public/timeslots?limit=3&cursor={first['next_cursor']}").get_json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert_problem(client.get("/public/timeslots?cursor=bogus!"), 422, "validation-error")  # not the documented pattern


def test_timeslot_listing_runs_a_constant_number_of_queries(client, session, db):
    teacher = factories.teacher(session, instruments=("piano", "bass"))
    for weekday in range(5):
        factories.timeslot(session, teacher_row=teacher, weekday=weekday, start="09:00")
    session.commit()
    counts = []

    def count(*_args):
        counts[-1] += 1

    sa.event.listen(db, "before_cursor_execute", count)
    try:
        for limit in (1, 5):
            counts.append(0)
            assert len(client.get(f"/public/timeslots?limit={limit}").get_json()["items"]) == limit
    finally:
        sa.event.remove(db, "before_cursor_execute", count)
    assert counts[0] == counts[1] <= 6, counts


@pytest.mark.parametrize(
    "today, expected",
    [
        (datetime(2026, 10, 28, 12, 0, tzinfo=NY), "2026-11-02T16:00:00-05:00"),  # after DST ends on Nov 1
        (datetime(2026, 10, 20, 12, 0, tzinfo=NY), "2026-10-26T16:00:00-04:00"),  # still daylight time
        (datetime(2026, 11, 2, 17, 0, tzinfo=NY), "2026-11-09T16:00:00-05:00"),  # today's lesson is over
    ],
)
def test_next_occurrence_carries_the_right_offset_across_dst(client, studio: Studio, today, expected):
    with time_machine.travel(today, tick=False):
        slots = {item["id"]: item for item in client.get("/public/timeslots").get_json()["items"]}
    assert slots[studio.slot_id]["next_occurrence"] == expected


def test_next_occurrence_skips_closures(client, session, studio: Studio):
    factories.semester(session, starts=date(2026, 9, 1), ends=date(2026, 12, 20), closures=[date(2026, 11, 2)])
    session.commit()
    with time_machine.travel(datetime(2026, 10, 28, 12, 0, tzinfo=NY), tick=False):
        slots = {item["id"]: item for item in client.get("/public/timeslots").get_json()["items"]}
    assert slots[studio.slot_id]["next_occurrence"] == "2026-11-09T16:00:00-05:00"


@pytest.mark.parametrize(
    "url, field",
    [
        ("/public/timeslots?weekday=9", "weekday"),
        ("/public/timeslots?teacher_id=abc", "teacher_id"),
        ("/public/timeslots?limit=0", "limit"),
        ("/public/timeslots?available=maybe", "available"),
    ],
)
def test_bad_query_is_422_naming_the_field(client, url, field):
    body = assert_problem(client.get(url), 422, "validation-error")
    assert field in body["detail"] and any(field in error["field"] for error in body["errors"])


def test_unknown_route_and_wrong_method_are_problems(client):
    assert_problem(client.get("/nowhere"), 404, "not-found")
    response = client.post("/public/instruments")
    assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["Allow"]


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_database_outage_is_503(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    client = make_app().test_client()
    response = client.get("/healthz")
    assert_problem(response, 503, "service-unavailable")
    assert_problem(client.get("/public/instruments"), 503, "service-unavailable")


def test_cors_only_for_configured_origins(client):
    allowed = client.get("/public/instruments", headers={"Origin": "https://app.studio.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.studio.test"
    denied = client.get("/public/instruments", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    preflight = client.options(
        "/parent/bookings",
        headers={
            "Origin": "https://app.studio.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Idempotency-Key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.studio.test"


def test_openapi_document(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "supabase", "calendarToken", "adminBearer"}
    assert "/parent/bookings" in spec["paths"] and "/public/timeslots" in spec["paths"]
    assert client.get("/openapi/openapi.json").status_code == 404  # flask-openapi3's pages: only with API_DOCS=true


def test_enrollment_rows_untouched_by_reads(client, session, studio: Studio):
    client.get("/public/timeslots")
    assert session.scalar(sa.select(sa.func.count()).select_from(Enrollment)) == 0


def test_stripe_webhook_is_registered_outside_auth_cors_and_limits(client):
    response = client.post("/webhooks/stripe", data=b"{}", headers={"Origin": "https://app.studio.test"})
    assert response.status_code not in (401, 404, 405, 429)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_timeslot_listing_matches_its_documented_schema(client, session, studio: Studio):
    """The listing is built as plain dicts (no pydantic model per item): every answer must
    still be exactly what `TimeslotPage` documents and would have serialised."""
    from webapi.schemas import TimeslotPage

    semester = factories.semester(session, starts=date(2026, 3, 2), ends=date(2026, 6, 27), closures=[date(2026, 3, 9)])
    assert semester is not None
    session.commit()
    with time_machine.travel(datetime(2026, 3, 3, 12, tzinfo=NY), tick=False):
        for path in ("/public/timeslots", "/public/timeslots?available=true", "/public/timeslots?limit=2"):
            answer = client.get(path).get_json()
            assert answer == TimeslotPage.model_validate(answer).model_dump(mode="json")
            assert all(item["next_occurrence"] for item in answer["items"])


def test_query_models_serve_a_cached_schema_equal_to_pydantic_s():
    """flask-openapi3 asks for the query and header schemas on every request; the cached
    copy must be pydantic's own, and changing a copy must not change the next one."""
    from pydantic import BaseModel

    from webapi.booking_schemas import BookingHeaders
    from webapi.schemas import CalendarQuery, PageQuery, TeacherQuery, TimeslotQuery

    for model in (PageQuery, TeacherQuery, TimeslotQuery, CalendarQuery, BookingHeaders):
        for kwargs in ({}, {"by_alias": True}, {"mode": "serialization"}):
            fresh = BaseModel.model_json_schema.__func__(model, **kwargs)
            assert model.model_json_schema(**kwargs) == fresh
            model.model_json_schema(**kwargs)["properties"].clear()
            assert model.model_json_schema(**kwargs) == fresh
