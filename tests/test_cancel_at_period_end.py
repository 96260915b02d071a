"""`POST /parent/bookings/<id>/cancel` and `studioctl enrollments cancel --at-period-end` against
the local Stripe server: Stripe told not to renew, the lessons kept until the last one of the
paid period, the booking `cancelled` when the subscription ends (webhook) or by the daily job,
the slot bookable from the day after. Both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlmodel import select

from models.audit import AuditLog
from models.clock import occurrence_start
from models.config import get_settings
from models.enrollment import Enrollment
from models.outbox import EmailLog
from models.people import Payee
from models.scheduling import Timeslot
from tests import factories
from tests.support import webhooks
from tests.support.api import assert_problem, booking_body
from tests.support.booking import family_booking, provisional_booking
from tests.support.cli import invoke, ok_json
from tests.support.fixtures import WEBHOOK_SECRET

pytestmark = pytest.mark.slow


def _paid_lessons(session, enrollment: Enrollment, period_end: datetime) -> list:
    """The slot's lesson dates from the booking's start that start before the period's end."""
    slot = session.get(Timeslot, enrollment.timeslot_id)
    tz = get_settings().tz
    days, day = [], enrollment.start_date
    while occurrence_start(day, slot.start_minute, tz) < period_end:
        days.append(day)
        day += timedelta(days=7)
    return days


def _emails(session, template: str) -> list[EmailLog]:
    session.expire_all()
    return list(session.exec(select(EmailLog).where(EmailLog.template == template)).all())


def _audits(session, action: str) -> list[AuditLog]:
    return list(session.exec(select(AuditLog).where(AuditLog.action == action)).all())


def _cancel(client, enrollment_id: int, headers: dict):
    return client.post(f"/parent/bookings/{enrollment_id}/cancel", headers=headers)


def test_cancel_at_period_end_keeps_the_paid_lessons_then_the_subscription_ending_ends_it(
    session, stripe_env, client, task_queue, family_b
):
    enrollment, headers = family_booking(session, stripe_env, task_queue)
    stripe = stripe_env.client()
    subscription_id = enrollment.stripe_subscription_id
    period_end = datetime.fromtimestamp(stripe.v1.subscriptions.retrieve(subscription_id).current_period_end, UTC)
    paid = _paid_lessons(session, enrollment, period_end)
    updates_before = stripe_env.post_counts().get(f"/v1/subscriptions/{subscription_id}", 0)

    first = _cancel(client, enrollment.id, headers)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["status"] == "active" and body["cancel_at_period_end"] is True
    assert body["end_date"] == paid[-1].isoformat() and len(paid) >= 4  # a month of weekly lessons, all kept
    assert stripe.v1.subscriptions.retrieve(subscription_id).cancel_at_period_end is True  # what the answer says
    again = _cancel(client, enrollment.id, headers)
    assert (again.status_code, again.get_json()) == (200, body)  # the same answer, nothing asked again
    assert stripe_env.post_counts().get(f"/v1/subscriptions/{subscription_id}", 0) == updates_before + 1
    [ending] = _emails(session, "enrollment_ending")
    assert ending.recipient == "user-c@family.test" and ending.context["end_date"] == body["end_date"]
    assert ending.context["paid_until"] == period_end.astimezone(get_settings().tz).date().isoformat()
    assert [row.actor for row in _audits(session, "enrollment.cancel_at_period_end")] == [
        f"payee:{_payee_id(session, enrollment)}"
    ]

    # The slot is free from the day after the last paid lesson, not before.
    end = paid[-1]
    student_b = family_b.add_student(client, "Bea")
    plan_id = enrollment.plan_id
    taken = client.post(
        "/parent/bookings",
        json=booking_body(student_b, enrollment.timeslot_id, plan_id, start_date=end.isoformat()),
        headers=family_b.headers,
    )
    assert_problem(taken, 409, "slot-taken")
    booked = client.post(
        "/parent/bookings", json=booking_body(student_b, enrollment.timeslot_id, plan_id), headers=family_b.headers
    )
    assert booked.status_code == 202, booked.get_json()
    next_holder = session.get(Enrollment, booked.get_json()["id"])
    assert next_holder.start_date == end + timedelta(days=7)

    # The period ends: Stripe cancels the subscription and says so.
    ended = stripe.v1.subscriptions.cancel(subscription_id).to_dict()
    with time_machine.travel(period_end + timedelta(minutes=5), tick=True):
        event = webhooks.event("customer.subscription.deleted", ended)
        assert webhooks.post(client, event, WEBHOOK_SECRET).status_code == 200
        task_queue.run_all()
    session.expire_all()
    over = session.get(Enrollment, enrollment.id)
    assert over.status == "cancelled" and over.end_date == end and over.cancel_at_period_end
    assert session.get(Enrollment, next_holder.id).status in ("provisional", "active")  # the next family keeps the slot
    assert [row.action for row in _audits(session, "enrollment.end")] == ["enrollment.end"]
    assert not session.exec(select(EmailLog).where(EmailLog.dedupe_key == f"subscription_ended:{enrollment.id}")).all()
    assert len(_emails(session, "enrollment_ending")) == 1


def _payee_id(session, enrollment: Enrollment) -> int:
    from models.enrollment import payee_of

    return payee_of(session, enrollment).id


def test_the_daily_job_ends_it_after_its_last_lesson_and_stripe_is_left_to_end_the_subscription(
    session, stripe_env, client, task_queue
):
    from workers.periodic import run_job

    enrollment, headers = family_booking(session, stripe_env, task_queue)
    body = _cancel(client, enrollment.id, headers).get_json()
    end = datetime.fromisoformat(body["end_date"]).date()
    with time_machine.travel(occurrence_start(end, 23 * 60 + 30, get_settings().tz), tick=True):
        assert run_job("end_finished_enrollments") == {"ended": []}  # its last lesson's day: still on
    with time_machine.travel(occurrence_start(end + timedelta(days=1), 6 * 60, get_settings().tz), tick=True):
        assert run_job("end_finished_enrollments") == {"ended": [enrollment.id]}
        assert run_job("end_finished_enrollments") == {"ended": []}  # safe twice
    session.expire_all()
    over = session.get(Enrollment, enrollment.id)
    assert over.status == "cancelled" and over.end_date == end
    subscription = stripe_env.client().v1.subscriptions.retrieve(over.stripe_subscription_id)
    assert subscription.status == "active" and subscription.cancel_at_period_end  # Stripe ends it at the period's end
    assert task_queue.names().count("cancel_subscription") == 0


def test_a_hold_is_cancelled_now_and_asking_again_answers_the_same(session, stripe_env, client, task_queue):
    enrollment, headers = family_booking(session, stripe_env, task_queue, card=False)
    task_queue.clear()
    first = _cancel(client, enrollment.id, headers)
    assert first.status_code == 200
    body = first.get_json()
    assert body["status"] == "cancelled" and body["cancel_at_period_end"] is False
    tasks = [task for task in task_queue.pending() if task[0] != "send_email"]
    assert tasks == [("cancel_subscription", (enrollment.id,))]  # what Stripe may hold is undone
    [ending] = _emails(session, "enrollment_ending")
    assert ending.context["immediately"] is True
    again = _cancel(client, enrollment.id, headers)
    assert (again.status_code, again.get_json()) == (200, body)
    assert len(_emails(session, "enrollment_ending")) == 1


def test_semester_offline_and_troubled_bookings_are_the_studios_to_end(session, stripe_env, client, task_queue, family_a):
    semester, headers = family_booking(session, stripe_env, task_queue, sub="user-s", frequency="semester")
    assert_problem(_cancel(client, semester.id, headers), 409, "contact-studio")
    monthly, headers = family_booking(session, stripe_env, task_queue, sub="user-m")
    monthly.status = "past_due"
    session.add(monthly)
    session.commit()
    assert_problem(_cancel(client, monthly.id, headers), 409, "contact-studio")
    student = factories.student(session, payee_row=session.get(Payee, family_a.payee_id))
    offline = Enrollment(
        student_id=student.id,
        timeslot_id=factories.timeslot(session, weekday=4).id,
        instrument_id=factories.instrument(session).id,
        status="active",
        offline=True,
        start_date=semester.start_date,
    )
    session.add(offline)
    session.commit()
    assert_problem(_cancel(client, offline.id, family_a.headers), 409, "contact-studio")
    # Another family's booking is not found, and stays as it was.
    assert_problem(_cancel(client, monthly.id, family_a.headers), 404)
    session.expire_all()
    assert session.get(Enrollment, monthly.id).cancel_at_period_end is False
    assert _emails(session, "enrollment_ending") == []


def test_stripe_unreachable_is_502_with_nothing_changed_and_asking_again_works(session, stripe_env, client, task_queue):
    enrollment, headers = family_booking(session, stripe_env, task_queue)
    stripe_env.fault(f"/v1/subscriptions/{enrollment.stripe_subscription_id}", method="POST", fail_times=1, status=500)
    assert_problem(_cancel(client, enrollment.id, headers), 502, "payment-provider-error")
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).cancel_at_period_end is False and _emails(session, "enrollment_ending") == []
    assert _cancel(client, enrollment.id, headers).get_json()["cancel_at_period_end"] is True


def test_cancelled_at_its_period_end_in_stripe_is_noticed_by_the_nightly_reconciliation(session, stripe_env, task_queue):
    """An answer lost after Stripe said yes, or a cancellation made in Stripe's dashboard."""
    from workers.periodic import run_job

    enrollment, _ = family_booking(session, stripe_env, task_queue)
    stripe_env.client().v1.subscriptions.update(enrollment.stripe_subscription_id, {"cancel_at_period_end": True})
    drift = run_job("reconcile_stripe")["drift"]
    assert any("cancelled at its period end" in line for line in drift), drift
    session.expire_all()
    marked = session.get(Enrollment, enrollment.id)
    assert marked.status == "active" and marked.cancel_at_period_end and marked.end_date is not None
    assert len(_emails(session, "enrollment_ending")) == 1
    assert run_job("reconcile_stripe")["drift"] == []  # noticed once


def test_the_paid_period_is_read_from_the_subscription_item_in_todays_shape(session):
    from tests.support import stripe_today
    from workers.webhook_events import sync_subscription_state

    enrollment, _, _, _ = provisional_booking(session, frequency="monthly")
    enrollment.status, enrollment.stripe_subscription_id, enrollment.provisional_expires_at = "active", "sub_today", None
    session.add(enrollment)
    session.commit()
    shaped = stripe_today.subscription("sub_today", customer="cus_today", status="active", enrollment_id=enrollment.id)
    shaped["cancel_at_period_end"] = True
    item_end = datetime.fromtimestamp(shaped["items"]["data"][0]["current_period_end"], UTC)
    assert "current_period_end" not in shaped
    sync_subscription_state(shaped, source="test")
    session.expire_all()
    marked = session.get(Enrollment, enrollment.id)
    assert marked.cancel_at_period_end and marked.end_date == _paid_lessons(session, marked, item_end)[-1]


def test_cli_cancel_at_period_end_and_the_plain_cancel_still_cancels_now(session, stripe_env, task_queue):
    enrollment, _ = family_booking(session, stripe_env, task_queue)
    view = ok_json("enrollments", "cancel", enrollment.id, "--at-period-end")
    assert view["status"] == "active" and view["cancel_at_period_end"] is True and view["end_date"]
    assert ok_json("enrollments", "cancel", enrollment.id, "--at-period-end") == view  # the same answer
    assert [row.actor for row in _audits(session, "enrollment.cancel_at_period_end")] == ["admin"]
    other, _ = family_booking(session, stripe_env, task_queue, sub="user-d")
    semester, _ = family_booking(session, stripe_env, task_queue, sub="user-e", frequency="semester")
    refusal = invoke("enrollments", "cancel", semester.id, "--at-period-end")
    assert refusal.exit_code == 1 and "semester plan" in refusal.stderr
    task_queue.clear()
    now = ok_json("enrollments", "cancel", other.id, "--reason", "moved away")
    assert now["status"] == "cancelled" and now["cancel_reason"] == "moved away"
    assert [task for task in task_queue.pending() if task[0] != "send_email"] == [("cancel_subscription", (other.id,))]
