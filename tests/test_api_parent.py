"""/parent/*: payee, students, bookings (holds, cap, idempotency), make-ups, calendar, BOLA."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import sqlalchemy as sa
import time_machine

from models.attendance import MakeUp
from models.audit import AuditLog
from models.enrollment import ACTIVE, Enrollment
from models.outbox import IdempotencyRecord
from models.people import Payee, Student
from tests import factories
from tests.support.api import Studio, assert_problem, bearer, booking_body, make_app, register

NY = ZoneInfo("America/New_York")


def _count(session, model, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _audits(session, actor: str, action: str) -> int:
    return _count(session, AuditLog, AuditLog.actor == actor, AuditLog.action == action)


# Payee -----------------------------------------------------------------------------------


def test_payee_is_self_upserted_from_the_token(client, session):
    headers = bearer("user-z", "z@family.test")
    assert_problem(client.get("/parent/payee", headers=headers), 403, "payee-required")
    assert_problem(client.get("/parent/students", headers=headers), 403, "payee-required")
    first = client.put("/parent/payee", json={"name": "Zoe", "phone": "+1 555 0100"}, headers=headers)
    assert first.status_code == 200
    body = first.get_json()
    assert body["email"] == "z@family.test" and body["name"] == "Zoe" and body["phone"] == "+1 555 0100"
    assert "/parent/calendar.ics?token=" in body["calendar_url"]
    again = client.put("/parent/payee", json={"name": "Zoe"}, headers=headers)
    assert again.get_json()["id"] == body["id"]
    assert client.get("/parent/payee", headers=headers).get_json() == again.get_json()
    assert _audits(session, f"payee:{body['id']}", "payee.signup") == 1


def test_calendar_token_never_reaches_the_audit_trail(client, session):
    headers = bearer("user-t", "t@family.test")
    body = client.put("/parent/payee", json={"name": "Tom"}, headers=headers).get_json()
    client.put("/parent/payee", json={"name": "Tom T."}, headers=headers)
    token = body["calendar_url"].split("token=", 1)[1]
    rows = session.scalars(sa.select(AuditLog).where(AuditLog.entity == "payee").order_by(AuditLog.id)).all()
    assert [row.action for row in rows] == ["payee.signup", "payee.update"]
    for row in rows:
        assert token not in repr((row.before, row.after))
        assert row.after["calendar_token"] == "[redacted]"


def test_payee_mass_assignment_is_refused(client, family_a):
    body = assert_problem(
        client.put("/parent/payee", json={"name": "X", "email": "evil@x.test"}, headers=family_a.headers), 422, "validation-error"
    )
    assert "email" in body["detail"]
    assert_problem(client.put("/parent/payee", json={"stripe_customer_id": "cus_1"}, headers=family_a.headers), 422)
    assert client.get("/parent/payee", headers=family_a.headers).get_json()["email"] == "a@family.test"


# Students --------------------------------------------------------------------------------


def test_student_crud(client, session, family_a):
    created = client.post(
        "/parent/students", json={"name": "Ada", "birth_date": "2016-05-01", "notes": "shy"}, headers=family_a.headers
    )
    assert created.status_code == 201
    student = created.get_json()
    assert created.headers["Location"].endswith(f"/parent/students/{student['id']}")
    assert student == {"id": student["id"], "name": "Ada", "birth_date": "2016-05-01", "notes": "shy"}
    url = f"/parent/students/{student['id']}"
    assert client.get(url, headers=family_a.headers).get_json() == student
    patched = client.patch(url, json={"name": "Ada L.", "notes": None}, headers=family_a.headers).get_json()
    assert patched == {"id": student["id"], "name": "Ada L.", "birth_date": "2016-05-01", "notes": None}
    listing = client.get("/parent/students", headers=family_a.headers).get_json()
    assert [item["id"] for item in listing["items"]] == [student["id"]]
    assert client.delete(url, headers=family_a.headers).status_code == 204
    assert_problem(client.get(url, headers=family_a.headers), 404, "not-found")
    assert client.get("/parent/students", headers=family_a.headers).get_json()["items"] == []
    actor = f"payee:{family_a.payee_id}"
    for action in ("student.add", "student.update", "student.remove"):
        assert _audits(session, actor, action) == 1, action


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "Eve", "payee_id": 999}, "payee_id"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": "Eve", "birth_date": "not-a-date"}, "birth_date"),
    ],
)
def test_student_input_is_validated_and_mass_assignment_refused(client, session, family_a, payload, field):
    body = assert_problem(client.post("/parent/students", json=payload, headers=family_a.headers), 422)
    assert field in body["detail"]
    assert _count(session, Student, Student.payee_id == family_a.payee_id) == 0


def test_patching_a_student_name_to_null_is_422_not_ignored(client, family_a):
    student = family_a.add_student(client)
    body = assert_problem(
        client.patch(f"/parent/students/{student}", json={"name": None}, headers=family_a.headers), 422, "validation-error"
    )
    assert "name" in body["detail"]
    assert client.get(f"/parent/students/{student}", headers=family_a.headers).get_json()["name"] == "Ada"


def test_future_birth_date_is_a_domain_422(client, family_a):
    later = (date.today() + timedelta(days=30)).isoformat()
    body = assert_problem(
        client.post("/parent/students", json={"name": "X", "birth_date": later}, headers=family_a.headers), 422, "invalid"
    )
    assert body["field"] == "birth_date"


def test_non_json_body_is_422_not_500(client, family_a):
    response = client.post(
        "/parent/students", data="name=Ada", headers=family_a.headers, content_type="application/x-www-form-urlencoded"
    )
    assert_problem(response, 422)


# Bookings --------------------------------------------------------------------------------


def test_booking_is_accepted_held_audited_and_enqueued_after_commit(client, session, studio: Studio, family_a, task_queue):
    student = family_a.add_student(client)
    response = client.post(
        "/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family_a.headers
    )
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "provisional" and body["status_url"] == f"/parent/bookings/{body['id']}"
    assert response.headers["Location"] == body["status_url"]
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=29) < expires - datetime.now(expires.tzinfo) <= timedelta(minutes=30)
    assert task_queue.pending() == [("book_enrollment", (body["id"],))]
    assert _audits(session, f"payee:{family_a.payee_id}", "enrollment.hold") == 1

    status = client.get(body["status_url"], headers=family_a.headers).get_json()
    assert status["status"] == "provisional" and status["failure_reason"] is None
    assert status["instrument"] == "piano" and status["timeslot_id"] == studio.slot_id
    listing = client.get("/parent/bookings", headers=family_a.headers).get_json()
    assert [item["id"] for item in listing["items"]] == [body["id"]]


def test_taken_slot_is_409_and_enqueues_nothing(client, studio: Studio, family_a, family_b, task_queue):
    assert (
        client.post(
            "/parent/bookings",
            json=booking_body(family_a.add_student(client), studio.slot_id, studio.plan_id),
            headers=family_a.headers,
        ).status_code
        == 202
    )
    task_queue.clear()
    response = client.post(
        "/parent/bookings",
        json=booking_body(family_b.add_student(client), studio.slot_id, studio.plan_id),
        headers=family_b.headers,
    )
    assert_problem(response, 409, "slot-taken")
    assert task_queue.pending() == []


def test_hold_cap_stops_slot_hoarding(client, session, studio: Studio, family_a):
    session.execute(sa.update(Payee).where(Payee.id == family_a.payee_id).values(stripe_payment_method_id="pm_on_file"))
    session.commit()  # a family with a card on file: the card holder's cap
    student = family_a.add_student(client)
    slots = [studio.slot_id, *studio.other_slot_ids]
    for slot_id in slots[:3]:
        assert (
            client.post(
                "/parent/bookings", json=booking_body(student, slot_id, studio.plan_id), headers=family_a.headers
            ).status_code
            == 202
        )
    response = client.post("/parent/bookings", json=booking_body(student, slots[3], studio.plan_id), headers=family_a.headers)
    assert_problem(response, 409, "too-many-holds")


@pytest.mark.parametrize(
    "change, status, type_",
    [
        ({"instrument": "drums"}, 422, "invalid"),  # the teacher does not teach it
        ({"instrument": "tuba"}, 404, "not-found"),
        ({"timeslot_id": 999999}, 404, "not-found"),
        ({"plan": 999999}, 404, "not-found"),
        ({"start_date": "2020-01-06"}, 422, "invalid"),
        ({"start_date": "9999-12-27"}, 422, "invalid"),  # years ahead: a 422, never a 500
        ({"status": "active"}, 422, "validation-error"),
        ({"student_id": "x"}, 422, "validation-error"),
    ],
)
def test_booking_refusals(client, session, studio: Studio, family_a, change, status, type_):
    factories.instrument(session, "drums")
    session.commit()
    body = booking_body(family_a.add_student(client), studio.slot_id, studio.plan_id) | change
    assert_problem(client.post("/parent/bookings", json=body, headers=family_a.headers), status, type_)
    assert _count(session, Enrollment) == 0


def test_teacher_must_teach_the_instrument(client, session, studio: Studio, family_a):
    factories.teacher(session, instruments=("drums",))
    session.commit()
    body = booking_body(family_a.add_student(client), studio.slot_id, studio.plan_id, instrument="drums")
    assert_problem(client.post("/parent/bookings", json=body, headers=family_a.headers), 422, "invalid")


def test_idempotency_key_replays_the_first_answer(client, session, studio: Studio, family_a, task_queue):
    body = booking_body(family_a.add_student(client), studio.slot_id, studio.plan_id)
    headers = family_a.headers | {"Idempotency-Key": "booking-attempt-1"}
    first = client.post("/parent/bookings", json=body, headers=headers)
    second = client.post("/parent/bookings", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _count(session, Enrollment) == 1
    assert _count(session, IdempotencyRecord) == 1
    assert task_queue.names() == ["book_enrollment"]
    other = client.post("/parent/bookings", json=body | {"start_date": None, "plan": "monthly"}, headers=headers)
    assert_problem(other, 422, "idempotency-key-reused")
    # Keys are per family: the same key from another family is a new request.
    assert _count(session, Enrollment) == 1


def test_failed_request_with_a_key_is_judged_again(client, session, studio: Studio, family_a, family_b):
    assert (
        client.post(
            "/parent/bookings",
            json=booking_body(family_b.add_student(client), studio.slot_id, studio.plan_id),
            headers=family_b.headers,
        ).status_code
        == 202
    )
    headers = family_a.headers | {"Idempotency-Key": "k-1"}
    body = booking_body(family_a.add_student(client), studio.slot_id, studio.plan_id)
    assert_problem(client.post("/parent/bookings", json=body, headers=headers), 409, "slot-taken")
    assert _count(session, IdempotencyRecord) == 0


def test_bookings_are_rate_limited_per_user(db, studio: Studio):
    client = make_app(RATELIMIT_BOOKINGS="2/minute").test_client()
    family = register(client, "user-r", "r@family.test")
    student = family.add_student(client)
    statuses = [
        client.post("/parent/bookings", json=booking_body(student, slot, studio.plan_id), headers=family.headers).status_code
        for slot in (studio.slot_id, *studio.other_slot_ids[:2])
    ]
    assert statuses[:2] == [202, 202] and statuses[2] == 429
    # Reads are not limited.
    assert client.get("/parent/bookings", headers=family.headers).status_code == 200


def test_payment_setup_needs_a_registered_payee(client):
    assert_problem(client.post("/parent/payment-setup"), 401)
    assert_problem(client.post("/parent/payment-setup", headers=bearer("nobody", "n@x.test")), 403, "payee-required")


def test_payment_setup_returns_a_setup_intent_secret(client, session, family_a, stripe_env):
    first = client.post("/parent/payment-setup", headers=family_a.headers)
    assert first.status_code == 200, first.get_json()
    assert set(first.get_json()) == {"client_secret"} and first.get_json()["client_secret"]
    second = client.post("/parent/payment-setup", headers=family_a.headers)
    assert second.status_code == 200
    assert client.get("/parent/payee", headers=family_a.headers).get_json()["has_billing_customer"] is True


# Make-ups and calendar -------------------------------------------------------------------


def _activate(session, enrollment_id: int) -> None:
    enrollment = session.get(Enrollment, enrollment_id)
    session.refresh(enrollment)
    enrollment.status, enrollment.provisional_expires_at = ACTIVE, None
    session.add(enrollment)
    session.commit()


@pytest.fixture
def term(session):
    """A semester around the travelled-to dates, with a closure on 2026-11-23."""
    semester = factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 18), closures=[date(2026, 11, 23)])
    session.commit()
    return semester


def test_makeups_list_slots_and_book(client, session, studio: Studio, family_a, term):
    student = family_a.add_student(client)
    with time_machine.travel(datetime(2026, 10, 28, 12, 0, tzinfo=NY), tick=False):
        family_a.headers = bearer(family_a.sub, family_a.email)  # a token minted at the travelled-to time
        credit = MakeUp(
            student_id=student, instrument_id=factories.instrument(session).id, reason="excused", expires_on=term.makeup_ends_on
        )
        session.add(credit)
        session.commit()
        listing = client.get("/parent/makeups", headers=family_a.headers).get_json()["items"]
        assert [item["id"] for item in listing] == [credit.id] and listing[0]["status"] == "available"
        options = client.get(f"/parent/makeups/{credit.id}/slots", headers=family_a.headers).get_json()["items"]
        assert options and options[0]["date"] == "2026-11-02"
        assert options[0]["start"] == "2026-11-02T16:00:00-05:00"
        assert "2026-11-23" not in {option["date"] for option in options}
        pick = {"timeslot_id": options[0]["timeslot_id"], "date": options[0]["date"]}
        booked = client.post(f"/parent/makeups/{credit.id}/book", json=pick, headers=family_a.headers)
        assert booked.status_code == 200 and booked.get_json()["status"] == "booked"
        assert_problem(client.post(f"/parent/makeups/{credit.id}/book", json=pick, headers=family_a.headers), 409)
        assert _audits(session, f"payee:{family_a.payee_id}", "makeup.book") == 1


def test_calendar_feed_parses_back_with_vtimezone(client, session, studio: Studio, family_a, term):
    student = family_a.add_student(client)
    with time_machine.travel(datetime(2026, 10, 20, 12, 0, tzinfo=NY), tick=False):
        family_a.headers = bearer(family_a.sub, family_a.email)  # a token minted at the travelled-to time
        booking = client.post(
            "/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family_a.headers
        ).get_json()
        _activate(session, booking["id"])
        by_bearer = client.get("/parent/calendar.ics", headers=family_a.headers)
        token_url = client.get("/parent/payee", headers=family_a.headers).get_json()["calendar_url"]
        by_token = client.get(token_url.replace("http://localhost", ""))
    assert by_bearer.status_code == 200 and by_bearer.mimetype == "text/calendar"
    assert by_token.status_code == 200
    calendar = icalendar.Calendar.from_ical(by_token.data)
    timezones = [component for component in calendar.walk("VTIMEZONE")]
    assert [str(tz["TZID"]) for tz in timezones] == ["America/New_York"]
    events = calendar.walk("VEVENT")
    starts = [event.decoded("DTSTART") for event in events]
    assert date(2026, 11, 2) in {start.date() for start in starts}
    assert date(2026, 11, 23) not in {start.date() for start in starts}  # closure
    november = next(start for start in starts if start.date() == date(2026, 11, 2))
    october = next(start for start in starts if start.date() == date(2026, 10, 26))
    assert (november.hour, october.hour) == (16, 16)
    assert november.utcoffset() == timedelta(hours=-5) and october.utcoffset() == timedelta(hours=-4)
    assert max(starts).date() <= term.ends_on


def test_calendar_with_a_wrong_token_is_404(client):
    # A token names a calendar: an unknown (or rotated) one names none.
    assert_problem(client.get("/parent/calendar.ics?token=nope"), 404, "not-found")


# BOLA ------------------------------------------------------------------------------------


def test_another_familys_objects_are_404_everywhere(client, session, studio: Studio, family_a, family_b):
    student = family_a.add_student(client)
    booking = client.post(
        "/parent/bookings", json=booking_body(student, studio.slot_id, studio.plan_id), headers=family_a.headers
    ).get_json()
    credit = MakeUp(student_id=student, reason="excused", expires_on=date.today() + timedelta(days=60))
    session.add(credit)
    session.commit()
    b = family_b.headers
    attempts = [
        client.get(f"/parent/students/{student}", headers=b),
        client.patch(f"/parent/students/{student}", json={"name": "Mallory"}, headers=b),
        client.delete(f"/parent/students/{student}", headers=b),
        client.get(f"/parent/bookings/{booking['id']}", headers=b),
        client.get(f"/parent/makeups/{credit.id}/slots", headers=b),
        client.post(
            f"/parent/makeups/{credit.id}/book", json={"timeslot_id": studio.other_slot_ids[0], "date": "2026-11-02"}, headers=b
        ),
        client.post("/parent/bookings", json=booking_body(student, studio.other_slot_ids[0], studio.plan_id), headers=b),
    ]
    for response in attempts:
        assert_problem(response, 404, "not-found")
    assert client.get("/parent/students", headers=b).get_json()["items"] == []
    assert client.get("/parent/bookings", headers=b).get_json()["items"] == []
    assert client.get("/parent/makeups", headers=b).get_json()["items"] == []
    session.expire_all()
    assert session.get(Student, student).name == "Ada" and session.get(Student, student).archived_at is None
    assert _count(session, Enrollment) == 1


def test_the_api_process_sends_queued_emails_after_commit():
    """A fresh API process registers the email dispatcher itself (a make-up booked as the
    worker's first request still gets its confirmation sent, not left for the retry job)."""
    import os
    import subprocess
    import sys

    from tests.support.processes import ROOT

    code = (
        "from webapi import create_app; from models import dispatch; create_app(); print(dispatch.email_dispatcher() is not None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "True", result.stderr
