"""`POST /parent/bookings/<id>/move` and `studioctl enrollments move`: one transaction, the
target slot locked as a booking locks it; the plan and the Stripe subscription go with the
booking (only its metadata changes), the old slot is free after its last lesson. Both engines."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import select
from werkzeug.serving import make_server

from models.audit import AuditLog
from models.booking import assign_enrollment
from models.db import session_scope
from models.enrollment import Enrollment, payee_of
from models.outbox import EmailLog
from models.people import Payee
from tests import factories
from tests.support.api import assert_problem, bearer, booking_body, make_app
from tests.support.booking import family_booking, local_today
from tests.support.cli import invoke, ok_json, row_counts

NOW = datetime(2026, 11, 3, 17, 0, tzinfo=UTC)  # Tuesday 12:00 in New York
MONDAY, WEDNESDAY = 0, 2


def _move(client, enrollment_id: int, headers: dict, **body):
    return client.post(f"/parent/bookings/{enrollment_id}/move", json=body, headers=headers)


def _emails(session, template: str) -> list[EmailLog]:
    session.expire_all()
    return list(session.exec(select(EmailLog).where(EmailLog.template == template)).all())


def _actions(session, entity_id: int) -> list[tuple[str, str]]:
    rows = session.exec(select(AuditLog).where(AuditLog.entity == "enrollment", AuditLog.entity_id == str(entity_id)))
    return [(row.actor, row.action) for row in rows.all()]


@pytest.mark.slow
def test_a_move_keeps_the_plan_and_the_subscription_and_charges_nothing(session, stripe_env, client, task_queue):
    from workers.periodic import run_job

    old, headers = family_booking(session, stripe_env, task_queue)
    subscription_id = old.stripe_subscription_id
    today = local_today()
    target = factories.timeslot(
        session, teacher_row=factories.teacher(session, instruments=("piano",)), weekday=(today.weekday() + 3) % 7, start="17:00"
    )
    session.commit()
    posts_before = stripe_env.post_counts()
    task_queue.clear()

    answer = _move(client, old.id, headers, timeslot_id=target.id)
    assert answer.status_code == 200, answer.get_json()
    moved = answer.get_json()
    assert moved["status"] == "active" and moved["timeslot_id"] == target.id and moved["plan_id"] == old.plan_id
    assert moved["start_date"] == (today + timedelta(days=3)).isoformat()
    session.expire_all()
    new, before = session.get(Enrollment, moved["id"]), session.get(Enrollment, old.id)
    assert new.moved_from_id == old.id and new.stripe_subscription_id == subscription_id
    assert before.status == "active" and before.end_date == old.start_date  # its one lesson before the move
    assert before.stripe_subscription_id is None  # the subscription bills the new booking now
    actor = f"payee:{payee_of(session, new).id}"
    assert (actor, "enrollment.move") in _actions(session, new.id)
    assert _actions(session, old.id)[-1] == (actor, "enrollment.moved")
    [email] = _emails(session, "lesson_moved")
    assert email.context["old_last_lesson"] == old.start_date.isoformat() and email.context["start_date"] == moved["start_date"]
    [alert] = _emails(session, "admin_alert")
    assert (
        alert.dedupe_key == f"lesson_moved:{new.id}:admin@studio.test" and "the old slot is free from" in alert.context["message"]
    )

    # After commit: the subscription's metadata names the new booking; nothing else asked of Stripe.
    assert ("move_subscription", (new.id,)) in task_queue.pending()
    task_queue.run_all()
    assert stripe_env.client().v1.subscriptions.retrieve(subscription_id).metadata["enrollment_id"] == str(new.id)
    posts_after = stripe_env.post_counts()
    changed = {
        path: count - posts_before.get(path, 0) for path, count in posts_after.items() if count != posts_before.get(path, 0)
    }
    assert changed == {f"/v1/subscriptions/{subscription_id}": 1}  # no subscription, invoice or payment made

    # The old booking ends after its last lesson; the new one runs on.
    with time_machine.travel(
        datetime.combine(old.start_date + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=12)
    ):
        assert run_job("end_finished_enrollments") == {"ended": [old.id]}
    session.expire_all()
    ended = session.get(Enrollment, old.id)
    assert (
        ended.status == "cancelled" and ended.end_date == old.start_date and ended.cancel_reason == f"moved to booking {new.id}"
    )
    assert session.get(Enrollment, new.id).status == "active"
    assert client.get(f"/parent/bookings/{new.id}", headers=headers).get_json()["status"] == "active"


@pytest.fixture
def week(session, family_a, family_b, client):
    """Family A's student on Monday 16:00 with Ada (offline, since September); Bob's teacher
    teaches piano on Wednesday 17:00; Cy teaches guitar only. The clock: Tuesday 3 November."""
    with time_machine.travel(NOW, tick=False):
        yield _week(session, family_a)


def _week(session, family_a) -> dict:
    ada = factories.teacher(session, name="Ada", instruments=("piano",))
    bob = factories.teacher(session, name="Bob", instruments=("piano",))
    cy = factories.teacher(session, name="Cy", instruments=("guitar",))
    monday = factories.timeslot(session, teacher_row=ada, weekday=MONDAY, start="16:00")
    wednesday = factories.timeslot(session, teacher_row=bob, weekday=WEDNESDAY, start="17:00")
    guitar = factories.timeslot(session, teacher_row=cy, weekday=WEDNESDAY, start="16:00")
    plan = factories.plan(session)
    student = factories.student(session, payee_row=session.get(Payee, family_a.payee_id), name="Ann")
    current = Enrollment(  # entered by the studio in September (paid outside Stripe)
        student_id=student.id,
        timeslot_id=monday.id,
        instrument_id=factories.instrument(session).id,
        status="active",
        offline=True,
        start_date=date(2026, 9, 14),
    )
    session.add(current)
    session.commit()
    return {"monday": monday.id, "wednesday": wednesday.id, "guitar": guitar.id, "plan": plan.id, "current": current.id}


def test_a_move_then_the_old_slot_is_booked_by_another_family_from_the_move_date(session, client, family_a, family_b, week):
    answer = _move(client, week["current"], family_a.headers, timeslot_id=week["wednesday"], start_date="2026-11-18")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["start_date"] == "2026-11-18"
    session.expire_all()
    assert session.get(Enrollment, week["current"]).end_date == date(2026, 11, 16)  # its last Monday before the move
    student_b = family_b.add_student(client, "Bea")
    taken = client.post(
        "/parent/bookings",
        json=booking_body(student_b, week["monday"], week["plan"], start_date="2026-11-16"),
        headers=family_b.headers,
    )
    assert_problem(taken, 409, "slot-taken")
    # From the move date on: without a start date, the first Monday after the old booking's last.
    booked = client.post("/parent/bookings", json=booking_body(student_b, week["monday"], week["plan"]), headers=family_b.headers)
    assert booked.status_code == 202, booked.get_json()
    assert session.get(Enrollment, booked.get_json()["id"]).start_date == date(2026, 11, 23)


def test_a_taken_target_is_409_slot_taken_and_changes_nothing(session, client, family_a, family_b, week):
    holder = factories.student(session, payee_row=session.get(Payee, family_b.payee_id))
    held = assign_enrollment(
        session,
        student_id=holder.id,
        timeslot_id=week["wednesday"],
        instrument="piano",
        plan=None,
        start_date=date(2026, 11, 4),
        offline=True,
        actor="admin",
    )
    held.end_date = date(2026, 11, 25)  # Bea's booking there ends on the 25th
    session.add(held)
    session.commit()
    counts = row_counts(session)
    refused = _move(client, week["current"], family_a.headers, timeslot_id=week["wednesday"], start_date="2026-11-11")
    assert_problem(refused, 409, "slot-taken")
    assert row_counts(session) == counts  # no enrollment, audit row or email
    current = session.get(Enrollment, week["current"])
    assert current.end_date is None and current.status == "active"
    # Without a start date the move takes the first free Wednesday.
    moved = _move(client, week["current"], family_a.headers, timeslot_id=week["wednesday"])
    assert moved.status_code == 200 and moved.get_json()["start_date"] == "2026-12-02"


@pytest.mark.parametrize(
    "body, status, type_",
    [
        ({"timeslot_id": "guitar"}, 422, "invalid"),  # Cy does not teach piano
        ({"timeslot_id": "monday"}, 422, "invalid"),  # its own slot
        ({"timeslot_id": "wednesday", "start_date": "2026-10-28"}, 422, "invalid"),  # in the past
        ({"timeslot_id": "wednesday", "start_date": "2026-11-19"}, 422, "invalid"),  # a Thursday
        ({"timeslot_id": 999_999}, 404, "not-found"),
        ({"timeslot_id": "wednesday", "plan": "weekly"}, 422, "validation-error"),  # nothing else may be set
    ],
)
def test_refused_moves_change_nothing(session, client, family_a, week, body, status, type_):
    body = {name: week.get(value, value) if isinstance(value, str) else value for name, value in body.items()}
    counts = row_counts(session)
    assert_problem(_move(client, week["current"], family_a.headers, **body), status, type_)
    assert row_counts(session) == counts


def test_only_an_active_booking_of_ones_own_moves_and_only_once(session, client, family_a, family_b, week):
    assert_problem(_move(client, week["current"], family_b.headers, timeslot_id=week["wednesday"]), 404)  # not theirs
    first = _move(client, week["current"], family_a.headers, timeslot_id=week["wednesday"], start_date="2026-11-18")
    assert first.status_code == 200  # the old booking runs until the 16th
    again = _move(client, week["current"], family_a.headers, timeslot_id=week["guitar"])
    assert "already moved" in assert_problem(again, 409, "conflict")["detail"]
    moved = session.get(Enrollment, first.get_json()["id"])
    moved.cancel_at_period_end, moved.end_date = True, date(2026, 11, 25)
    session.add(moved)
    session.commit()
    assert_problem(_move(client, moved.id, family_a.headers, timeslot_id=week["monday"]), 409, "conflict")
    student = factories.student(session, payee_row=session.get(Payee, family_a.payee_id))
    hold = assign_enrollment(
        session, student_id=student.id, timeslot_id=week["guitar"], instrument="guitar", plan=week["plan"], actor="admin"
    )
    session.commit()
    assert_problem(_move(client, hold.id, family_a.headers, timeslot_id=week["monday"]), 409, "conflict")


def test_cli_move_and_its_refusal(session, family_a, week):
    view = ok_json("enrollments", "move", week["current"], "--timeslot", week["wednesday"], "--start", "2026-11-18")
    assert view["moved_from_id"] == week["current"] and view["start_date"] == "2026-11-18" and view["slot"] == "Wed 17:00"
    assert [action for actor, action in _actions(session, view["id"]) if actor == "admin"][-1] == "enrollment.move"
    refused = invoke("enrollments", "move", view["id"], "--timeslot", week["guitar"])
    assert refused.exit_code == 1 and "does not teach piano" in refused.stderr and "Traceback" not in refused.output


# A race for the target slot --------------------------------------------------------------

RACERS = 12


@pytest.fixture
def live_server(committed_db):
    """The API on 127.0.0.1 in a threaded werkzeug server (one thread per request)."""
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
@pytest.mark.parametrize("bookers", [0, RACERS // 2], ids=["moves", "moves-and-bookings"])
def test_families_moving_and_booking_into_one_slot_at_once_exactly_one_gets_it(live_server, engine_name, bookers):
    """Families move a booking of theirs there at once (and, in the second race, as many book it):
    the move takes the slot's lock as a booking does, so exactly one of them wins and every
    loser's booking is as it was."""
    with session_scope() as session:
        target_teacher = factories.teacher(session, instruments=("piano",))
        target = factories.timeslot(session, teacher_row=target_teacher, weekday=WEDNESDAY, start="15:00")
        plan = factories.plan(session)
        racers = []
        for n in range(RACERS):
            payee = factories.payee(session, email=f"mover{n}@family.test", supabase_user_id=f"mover-{n}")
            student = factories.student(session, payee_row=payee)
            if n >= bookers:  # a mover: an active booking of its own elsewhere
                slot = factories.timeslot(session, weekday=MONDAY, start=f"{9 + n // 2:02d}:00")
                current = assign_enrollment(
                    session,
                    student_id=student.id,
                    timeslot_id=slot.id,
                    instrument="piano",
                    plan=None,
                    offline=True,
                    actor="admin",
                )
                request = ("move", current.id, {"timeslot_id": target.id})
            else:
                request = ("book", None, booking_body(student.id, target.id, 0) | {"plan": plan.id})
            racers.append((bearer(f"mover-{n}", f"mover{n}@family.test"), request))
        target_id = target.id
        movers = {current_id for _, (kind, current_id, _) in racers if kind == "move"}
    barrier = threading.Barrier(RACERS)
    results: list[tuple[str, int, dict]] = []
    lock = threading.Lock()

    def race(headers: dict, request) -> None:
        kind, current_id, body = request
        url = f"{live_server}/parent/bookings" + (f"/{current_id}/move" if kind == "move" else "")
        barrier.wait()
        status, answer = _post(url, body, headers)
        with lock:
            results.append((kind, status, answer))

    threads = [threading.Thread(target=race, args=racer) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    won = [result for result in results if result[1] in (200, 202)]
    assert len(won) == 1, sorted(status for _, status, _ in results)
    assert sorted(status for _, status, _ in results if status not in (200, 202)) == [409] * (RACERS - 1)
    assert {answer["type"] for _, status, answer in results if status == 409} == {"slot-taken"}
    with session_scope(write=False) as session:
        on_target = session.exec(select(Enrollment.id).where(Enrollment.timeslot_id == target_id)).all()
        assert on_target == [won[0][2]["id"]]
        losers = movers - ({session.get(Enrollment, won[0][2]["id"]).moved_from_id} if won[0][0] == "move" else set())
        for current_id in losers:  # every losing mover's booking as it was
            current = session.get(Enrollment, current_id)
            assert (current.status, current.end_date, current.cancel_reason) == ("active", None, None)
        moves = session.exec(select(sa.func.count()).select_from(Enrollment).where(Enrollment.moved_from_id.is_not(None))).one()
        assert moves == (1 if won[0][0] == "move" else 0)
        audits = session.exec(select(AuditLog.action).where(AuditLog.action.in_(("enrollment.move", "enrollment.moved")))).all()
        assert sorted(audits) == (["enrollment.move", "enrollment.moved"] if won[0][0] == "move" else [])
