"""The sibling discount (issue 15, item 4) against the local Stripe server: a family's second and
further live enrollments carry a percent-off coupon on their subscriptions (or have it taken off
their semester charge), the most expensive one pays full price, and the coupon moves in Stripe
(audited) when an enrollment ends, becomes active or is moved. Both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlmodel import select

from models import booking
from models.audit import AuditLog
from models.config import reset_settings
from models.db import after_commit, session_scope
from models.enrollment import Enrollment, cancel_enrollment, lesson_dates
from models.outbox import DeadLetter, EmailLog
from tests import factories
from tests.support.booking import add_card, local_today
from tests.support.cli import ok_json

pytestmark = pytest.mark.slow

PERCENT = 10
COUPON = f"sibling-{PERCENT}"


@pytest.fixture
def discount(stripe_env, monkeypatch):
    """SIBLING_DISCOUNT_PERCENT=10 (a test may change it with `discount(percent)`)."""

    def set_percent(percent: int) -> None:
        monkeypatch.setenv("SIBLING_DISCOUNT_PERCENT", str(percent))
        reset_settings()

    set_percent(PERCENT)
    yield set_percent
    monkeypatch.delenv("SIBLING_DISCOUNT_PERCENT")
    reset_settings()


def _book(session, stripe_env, task_queue, payee, *, frequency: str, amount_cents: int, weekday_offset: int = 1) -> Enrollment:
    """A booking of the family on a fresh slot, taken to `active` by the real pipeline (and every
    task it leaves run: the confirmation, the discount's rebalancing)."""
    from workers.tasks import book_enrollment

    student = factories.student(session, payee_row=payee)
    slot = factories.timeslot(session, weekday=(local_today().weekday() + weekday_offset) % 7)
    plan = factories.plan(session, frequency=frequency, amount_cents=amount_cents)
    held = booking.hold_slot(
        session, payee=payee, student_id=student.id, timeslot_id=slot.id, instrument="piano", plan=plan.id, actor="admin"
    )
    session.commit()
    if not payee.stripe_customer_id:
        add_card(stripe_env.client(), payee.id)
    book_enrollment(held.id)
    task_queue.run_all()
    session.expire_all()
    enrollment = session.get(Enrollment, held.id)
    assert enrollment.status == "active", enrollment.failure_reason
    return enrollment


def _subscription(stripe_env, subscription_id: str) -> dict:
    return stripe_env._request("GET", f"/v1/subscriptions/{subscription_id}?expand[]=discounts")


def _coupons(stripe_env, subscription_id: str) -> list[str]:
    return [d["source"]["coupon"] for d in _subscription(stripe_env, subscription_id)["discounts"]]


def _first_invoice(stripe_env, subscription_id: str) -> dict:
    return stripe_env._request("GET", f"/v1/invoices/{_subscription(stripe_env, subscription_id)['latest_invoice']}")


def _discount_audits(session, enrollment_id: int) -> list[tuple[str, int, int]]:
    rows = session.exec(
        select(AuditLog).where(AuditLog.action == "enrollment.discount", AuditLog.entity_id == str(enrollment_id))
    ).all()
    return [(row.actor, row.before["discount_percent"], row.after["discount_percent"]) for row in rows]


def _rebalance(enrollment_id: int) -> str:
    from workers.sibling_discounts import rebalance_sibling_discounts

    return rebalance_sibling_discounts.call_local(enrollment_id)


def _end(session, task_queue, enrollment: Enrollment) -> None:
    """The admin cancels a booking (`studioctl enrollments cancel`'s operation); every task it
    leaves (its subscription cancelled, the family's discount moved) runs."""
    from workers.tasks import cancel_subscription

    with session_scope() as unit:
        cancel_enrollment(unit, unit.get(Enrollment, enrollment.id), reason="family left", actor="admin")
        after_commit(unit, lambda: cancel_subscription(enrollment.id))
    task_queue.run_all()
    session.expire_all()


def test_a_second_enrollment_is_billed_with_the_coupon_and_the_confirmation_shows_it(session, stripe_env, task_queue, discount):
    from workers.emails import render_email

    payee = factories.payee(session)
    first = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)  # 46.15 a week
    second = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)

    assert (first.discount_percent, second.discount_percent) == (0, PERCENT)
    assert _coupons(stripe_env, first.stripe_subscription_id) == []
    assert _coupons(stripe_env, second.stripe_subscription_id) == [COUPON]
    coupon = stripe_env._request("GET", f"/v1/coupons/{COUPON}")
    assert (coupon["percent_off"], coupon["duration"]) == (PERCENT, "forever")
    assert _first_invoice(stripe_env, first.stripe_subscription_id)["amount_paid"] == 20000
    invoice = _first_invoice(stripe_env, second.stripe_subscription_id)
    assert (invoice["subtotal"], invoice["amount_paid"]) == (3000, 2700)  # the first charge is discounted too
    assert _discount_audits(session, second.id) == [("worker", 0, PERCENT)]
    assert _discount_audits(session, first.id) == []

    [email] = session.exec(
        select(EmailLog).where(EmailLog.template == "booking_confirmation", EmailLog.dedupe_key.endswith(f":{second.id}"))
    ).all()
    assert (email.context["discount_percent"], email.context["discounted_amount"]) == (PERCENT, "27.00 USD")
    rendered = render_email(email.template, email.context)
    assert "USD)\n  Sibling discount: 10% off, you pay 27.00 USD instead of 30.00 USD\nSee you" in rendered.text
    assert "Sibling discount: 10% off, you pay 27.00 USD instead of 30.00 USD" in rendered.html
    [first_email] = session.exec(
        select(EmailLog).where(EmailLog.template == "booking_confirmation", EmailLog.dedupe_key.endswith(f":{first.id}"))
    ).all()
    assert "Sibling discount" not in render_email(first_email.template, first_email.context).text
    # The activations' rebalancing ran and found the rule kept: running it again changes nothing.
    posts = stripe_env.post_counts()
    assert _rebalance(second.id) == "unchanged"
    assert stripe_env.post_counts() == posts


def test_the_semester_charge_is_computed_with_the_discount(session, stripe_env, task_queue, discount):
    today = local_today()
    factories.semester(session, starts=today, ends=today + timedelta(days=69))
    payee = factories.payee(session)
    _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    semester = _book(session, stripe_env, task_queue, payee, frequency="semester", amount_cents=4000)

    lessons = len(lesson_dates(session, semester, first=today))
    full = 4000 * lessons
    intent = stripe_env._request("GET", f"/v1/payment_intents/{semester.stripe_payment_intent_id}")
    assert lessons >= 9 and intent["amount"] == full - full // 10 and intent["status"] == "succeeded"
    assert semester.discount_percent == PERCENT


def test_when_the_full_price_enrollment_ends_the_discount_moves_to_the_next_most_expensive(
    session, stripe_env, task_queue, discount
):
    payee = factories.payee(session)
    full = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    dearer = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)
    cheaper = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=2500, weekday_offset=2)
    assert [e.discount_percent for e in (full, dearer, cheaper)] == [0, PERCENT, PERCENT]
    task_queue.clear()

    _end(session, task_queue, full)

    dearer, cheaper = session.get(Enrollment, dearer.id), session.get(Enrollment, cheaper.id)
    assert _subscription(stripe_env, full.stripe_subscription_id)["status"] == "canceled"
    assert _coupons(stripe_env, dearer.stripe_subscription_id) == []  # the most expensive left pays full price
    assert _coupons(stripe_env, cheaper.stripe_subscription_id) == [COUPON]
    assert (dearer.discount_percent, dearer.discount_changes) == (0, 1)
    assert (cheaper.discount_percent, cheaper.discount_changes) == (PERCENT, 0)
    assert _discount_audits(session, dearer.id) == [("worker", 0, PERCENT), ("worker", PERCENT, 0)]

    posts = stripe_env.post_counts()
    assert _rebalance(full.id) == "unchanged"  # safe to run twice: nothing asked of Stripe again
    assert stripe_env.post_counts() == posts
    assert _discount_audits(session, dearer.id)[-1] == ("worker", PERCENT, 0)


def test_a_dearer_new_booking_pays_full_price_and_the_discount_moves_to_the_older_ones(session, stripe_env, task_queue, discount):
    payee = factories.payee(session)
    older = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)
    assert older.discount_percent == 0 and _coupons(stripe_env, older.stripe_subscription_id) == []
    dearer = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    same_price = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000, weekday_offset=2)
    session.expire_all()
    older = session.get(Enrollment, older.id)

    assert _coupons(stripe_env, dearer.stripe_subscription_id) == []  # billed at full price from its first invoice
    assert _first_invoice(stripe_env, dearer.stripe_subscription_id)["amount_paid"] == 20000
    assert _coupons(stripe_env, older.stripe_subscription_id) == [COUPON]  # moved onto the older booking
    assert _coupons(stripe_env, same_price.stripe_subscription_id) == [COUPON]
    assert _discount_audits(session, older.id) == [("worker", 0, PERCENT)]

    # The dearest ends: of two at the same price, the older pays full price.
    _end(session, task_queue, dearer)
    assert _coupons(stripe_env, older.stripe_subscription_id) == []
    assert _coupons(stripe_env, same_price.stripe_subscription_id) == [COUPON]
    assert [session.get(Enrollment, e.id).discount_percent for e in (older, same_price)] == [0, PERCENT]


def test_a_moved_booking_keeps_its_discount_and_the_replacement_is_what_moves(session, stripe_env, task_queue, discount):
    from models.changes import move_enrollment
    from workers.periodic import run_job

    payee = factories.payee(session)
    full = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    discounted = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)
    subscription_id = discounted.stripe_subscription_id
    today = local_today()
    target = factories.timeslot(
        session, teacher_row=factories.teacher(session, instruments=("piano",)), weekday=(today.weekday() + 3) % 7, start="17:00"
    )
    session.commit()
    task_queue.clear()

    with session_scope() as unit:
        moved_id = move_enrollment(unit, unit.get(Enrollment, discounted.id), timeslot_id=target.id, actor="admin").id
    task_queue.run_all()
    session.expire_all()
    moved = session.get(Enrollment, moved_id)
    assert moved.stripe_subscription_id == subscription_id and moved.discount_percent == PERCENT
    assert _coupons(stripe_env, subscription_id) == [COUPON]

    # The old booking ends after its last lesson: nothing to move, the replacement holds the discount.
    posts = stripe_env.post_counts()
    with time_machine.travel(
        datetime.combine(discounted.start_date + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=12)
    ):
        assert run_job("end_finished_enrollments") == {"ended": [discounted.id]}
    task_queue.run_all()
    assert stripe_env.post_counts().get(f"/v1/subscriptions/{subscription_id}") == posts.get(
        f"/v1/subscriptions/{subscription_id}"
    )

    # The full-price booking ends: the replacement is the one that now pays full price.
    _end(session, task_queue, full)
    assert _coupons(stripe_env, subscription_id) == []
    assert session.get(Enrollment, moved_id).discount_percent == 0


def test_term_preview_shows_the_discount_per_enrollment_and_family(session, stripe_env, task_queue, discount):
    today = local_today()
    semester = factories.semester(session, starts=today, ends=today + timedelta(days=69))
    payee = factories.payee(session)
    full = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    weekly = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)
    session.commit()

    preview = ok_json("term-preview", "--semester", str(semester.id), "--payee", payee.email)
    by_id = {e["id"]: e for e in preview["enrollments"]}
    assert (by_id[full.id]["discount_cents"], by_id[full.id]["discount_percent"]) == (0, 0)
    lessons = by_id[weekly.id]["lesson_count"]
    assert lessons >= 9 and by_id[weekly.id]["amount_cents"] == 3000 * lessons
    assert (by_id[weekly.id]["discount_cents"], by_id[weekly.id]["discount_percent"]) == (300 * lessons, PERCENT)
    [family] = preview["families"]
    assert family["discount_cents"] == 300 * lessons and preview["discount_cents"] == 300 * lessons
    assert family["amount_cents"] == by_id[full.id]["amount_cents"] + 3000 * lessons  # amounts stay at full price


def test_a_zero_percent_means_no_coupon_and_nothing_moved(session, stripe_env, task_queue, discount):
    discount(0)
    payee = factories.payee(session)
    posts = stripe_env.post_counts()
    first = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    second = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)

    assert _coupons(stripe_env, second.stripe_subscription_id) == []
    assert _first_invoice(stripe_env, second.stripe_subscription_id)["amount_paid"] == 3000
    assert (first.discount_percent, second.discount_percent) == (0, 0)
    assert stripe_env.post_counts().get("/v1/coupons", 0) == posts.get("/v1/coupons", 0)
    task_queue.clear()
    _end(session, task_queue, first)
    assert "rebalance_sibling_discounts" not in task_queue.names()
    assert _coupons(stripe_env, second.stripe_subscription_id) == []
    assert _rebalance(second.id) == "skipped"


@pytest.mark.stripe_contract_exempt  # the injected 400 is the fault, not our request
def test_stripe_refusing_the_move_leaves_a_dead_letter_that_replays(session, stripe_env, task_queue, discount):
    from workers.tasks import replay_dead_letter

    payee = factories.payee(session)
    full = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    discounted = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)
    stripe_env.fault(
        f"/v1/subscriptions/{discounted.stripe_subscription_id}", fail_times=1, status=400, type="invalid_request_error"
    )

    _end(session, task_queue, full)
    [letter] = session.exec(select(DeadLetter).where(DeadLetter.kind == "rebalance_sibling_discounts")).all()
    assert letter.payload == {"enrollment_id": full.id} and "injected failure" in letter.error
    assert session.get(Enrollment, discounted.id).discount_percent == PERCENT  # nothing recorded that Stripe did not do
    alerts = session.exec(select(EmailLog).where(EmailLog.dedupe_key.startswith(f"discount_failed:{full.id}:"))).all()
    assert len(alerts) == 1

    assert (
        replay_dead_letter(kind=letter.kind, payload=letter.payload)
        == f"the sibling discount of booking {full.id}'s family queued again"
    )
    task_queue.run_all()
    session.expire_all()
    assert _coupons(stripe_env, discounted.stripe_subscription_id) == []
    assert session.get(Enrollment, discounted.id).discount_percent == 0


def test_a_lost_rebalancing_is_found_by_the_nightly_reconciliation(session, stripe_env, task_queue, discount):
    from workers.periodic import run_job
    from workers.tasks import cancel_subscription

    payee = factories.payee(session)
    full = _book(session, stripe_env, task_queue, payee, frequency="monthly", amount_cents=20000)
    discounted = _book(session, stripe_env, task_queue, payee, frequency="weekly", amount_cents=3000)
    with session_scope() as unit:
        cancel_enrollment(unit, unit.get(Enrollment, full.id), reason="family left", actor="admin")
    assert "rebalance_sibling_discounts" in task_queue.names()
    task_queue.clear()  # the worker that popped the tasks was killed
    cancel_subscription.call_local(full.id)
    assert _coupons(stripe_env, discounted.stripe_subscription_id) == [COUPON]

    report = run_job("reconcile_stripe")
    assert report["sibling_discounts_queued"] == [discounted.id]
    task_queue.run_all()
    session.expire_all()
    assert _coupons(stripe_env, discounted.stripe_subscription_id) == []
    assert session.get(Enrollment, discounted.id).discount_percent == 0
    assert "sibling_discounts_queued" not in run_job("reconcile_stripe")  # the rule holds again
