"""Enrollment rules in the shared layer: holds, the hold cap, expiry, activation, cancellation."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import Session, select

from models.audit import AuditLog
from models.booking import assign_enrollment, hold_slot
from models.db import session_scope
from models.dunning import mark_past_due
from models.enrollment import Enrollment, activate_enrollment, cancel_enrollment, expire_provisional_holds, lesson_dates
from models.errors import Invalid, NotFound, SlotTaken, TooManyHolds
from models.outbox import EmailLog
from tests import factories

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 in New York


@pytest.fixture
def studio(session):
    teacher = factories.teacher(session, instruments=("piano", "guitar"))
    factories.instrument(session, "drums")
    slots = [factories.timeslot(session, teacher_row=teacher, weekday=0, start=f"{h}:00") for h in (15, 16, 17, 18)]
    payee = factories.payee(session)
    kids = [factories.student(session, payee_row=payee) for _ in range(2)]
    plan = factories.plan(session, frequency="monthly")
    semester = factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), closures=[date(2026, 11, 30)])
    session.commit()
    return {"teacher": teacher, "slots": slots, "payee": payee, "kids": kids, "plan": plan, "semester": semester}


def _hold(studio, slot_index=0, kid=0, **extra):
    with session_scope() as session:
        enrollment = hold_slot(
            session,
            payee=studio["payee"],
            student_id=studio["kids"][kid].id,
            timeslot_id=studio["slots"][slot_index].id,
            instrument="piano",
            plan=studio["plan"].id,
            actor=f"payee:{studio['payee'].id}",
            now=NOW,
            **extra,
        )
        return enrollment.id


def test_hold_creates_provisional_with_expiry_and_first_lesson(studio, session):
    enrollment = session.get(Enrollment, _hold(studio))
    assert enrollment.status == "provisional"
    assert enrollment.provisional_expires_at == NOW + timedelta(minutes=30)
    # Next Monday after 2026-11-24 is 2026-11-30, a closure: the first lesson is 2026-12-07.
    assert enrollment.start_date == date(2026, 12, 7)
    assert enrollment.semester_id == studio["semester"].id
    assert (
        session.exec(select(AuditLog).where(AuditLog.action == "enrollment.hold", AuditLog.entity_id == str(enrollment.id)))
        .one()
        .actor.startswith("payee:")
    )


def test_taken_slot_is_refused_and_nothing_added(studio, session):
    _hold(studio)
    with pytest.raises(SlotTaken):
        _hold(studio, kid=1)
    assert len(session.exec(select(Enrollment)).all()) == 1


def test_another_familys_student_is_not_found(studio, session):
    stranger = factories.student(session)
    session.commit()
    with pytest.raises(NotFound):
        with session_scope() as unit:
            hold_slot(
                unit,
                payee=studio["payee"],
                student_id=stranger.id,
                timeslot_id=studio["slots"][0].id,
                instrument="piano",
                plan=studio["plan"].id,
                actor="payee",
                now=NOW,
            )


def test_instrument_must_be_taught_and_slot_open(studio, session):
    with pytest.raises(Invalid, match="does not teach"):
        with session_scope() as unit:
            hold_slot(
                unit,
                payee=studio["payee"],
                student_id=studio["kids"][0].id,
                timeslot_id=studio["slots"][0].id,
                instrument="drums",
                plan=studio["plan"].id,
                actor="payee",
                now=NOW,
            )
    closed = factories.timeslot(session, teacher_row=studio["teacher"], weekday=1, active=False)
    session.commit()
    with pytest.raises(Invalid, match="not open"):
        with session_scope() as unit:
            hold_slot(
                unit,
                payee=studio["payee"],
                student_id=studio["kids"][0].id,
                timeslot_id=closed.id,
                instrument="piano",
                plan=studio["plan"].id,
                actor="payee",
                now=NOW,
            )


def test_start_date_must_be_the_slots_weekday(studio):
    with pytest.raises(Invalid, match="not a Mon"):
        _hold(studio, start_date=date(2026, 12, 8))


def _card_on_file(studio, session) -> None:
    studio["payee"].stripe_payment_method_id = "pm_on_file"
    session.add(studio["payee"])
    session.commit()


def test_hold_cap_per_family(studio, session, monkeypatch):
    from models.config import reset_settings

    monkeypatch.setenv("MAX_HOLDS_PER_PAYEE", "2")
    reset_settings()
    _card_on_file(studio, session)
    _hold(studio, 0)
    _hold(studio, 1)
    with pytest.raises(TooManyHolds):
        _hold(studio, 2)


def test_a_booking_waiting_for_3ds_still_counts_against_the_hold_cap(studio, session, monkeypatch):
    from models.config import reset_settings
    from models.enrollment import lock_enrollment
    from models.payment_action import PaymentAction, await_payment_action

    monkeypatch.setenv("MAX_HOLDS_PER_PAYEE", "2")
    reset_settings()
    _card_on_file(studio, session)
    for index in (0, 1):
        enrollment_id = _hold(studio, index)
        with session_scope() as session:
            assert await_payment_action(
                session,
                lock_enrollment(session, enrollment_id),
                actor="worker",
                action=PaymentAction(client_secret=f"pi_{index}_secret_x"),
                now=NOW,
            )
    with pytest.raises(TooManyHolds):  # two slots held for a day each: no third
        _hold(studio, 2)


def test_expiry_frees_the_slot_and_tells_parent_and_admin(studio, session):
    enrollment_id = _hold(studio)
    with session_scope() as unit:
        assert expire_provisional_holds(unit, now=NOW + timedelta(minutes=29)) == []
    with session_scope() as unit:
        assert [e.id for e in expire_provisional_holds(unit, now=NOW + timedelta(minutes=31))] == [enrollment_id]
    with session_scope() as unit:  # running twice changes nothing more
        assert expire_provisional_holds(unit, now=NOW + timedelta(minutes=40)) == []
    session.expire_all()
    assert session.get(Enrollment, enrollment_id).status == "expired"
    emails = session.exec(select(EmailLog).order_by(EmailLog.id)).all()
    assert sorted((e.template, e.recipient) for e in emails) == [
        ("admin_alert", "admin@studio.test"),
        ("hold_expired", studio["payee"].email),
    ]
    _hold(studio, kid=1)  # the slot is free again


def test_activation_is_once_and_queues_one_confirmation(studio, session, task_queue):
    enrollment_id = _hold(studio)
    for _ in range(2):
        with session_scope() as unit:
            activate_enrollment(unit, unit.get(Enrollment, enrollment_id), actor="worker", subscription_id="sub_1")
    session.expire_all()
    assert session.get(Enrollment, enrollment_id).status == "active"
    confirmations = session.exec(select(EmailLog).where(EmailLog.template == "booking_confirmation")).all()
    assert len(confirmations) == 1
    assert task_queue.names().count("send_email") == 1


def test_cancel_frees_the_slot_and_refuses_twice(studio, session):
    enrollment_id = _hold(studio)
    with session_scope() as unit:
        cancel_enrollment(unit, unit.get(Enrollment, enrollment_id), reason="moved away", actor="admin")
    from models.errors import Conflict

    with pytest.raises(Conflict):
        with session_scope() as unit:
            cancel_enrollment(unit, unit.get(Enrollment, enrollment_id), reason=None, actor="admin")
    _hold(studio, kid=1)


def test_past_due_only_from_active(studio, session):
    enrollment_id = _hold(studio)
    with session_scope() as unit:
        assert not mark_past_due(unit, unit.get(Enrollment, enrollment_id), actor="worker")
        activate_enrollment(unit, unit.get(Enrollment, enrollment_id), actor="worker")
        assert mark_past_due(unit, unit.get(Enrollment, enrollment_id), actor="worker", now=NOW)
    session.expire_all()
    assert session.get(Enrollment, enrollment_id).status == "past_due"


def test_offline_assignment_is_active_and_lessons_skip_closures(studio, session):
    with session_scope() as unit:
        enrollment = assign_enrollment(
            unit,
            student_id=studio["kids"][0].id,
            timeslot_id=studio["slots"][3].id,
            instrument="guitar",
            plan=None,
            offline=True,
            actor="admin",
            now=NOW,
        )
        dates = lesson_dates(unit, enrollment)
    assert enrollment.status == "active"
    assert dates == [date(2026, 12, 7), date(2026, 12, 14)]


@pytest.mark.postgres
def test_concurrent_holds_on_one_slot_admit_exactly_one(committed_db, engine_name):
    """20 threads, each its own family and connection, race for one slot on PostgreSQL."""
    from models.db import get_engine

    with Session(get_engine()) as session:
        slot = factories.timeslot(session)
        plan = factories.plan(session)
        factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19))
        families = [factories.payee(session) for _ in range(20)]
        kids = [factories.student(session, payee_row=family) for family in families]
        session.commit()
        slot_id, plan_id = slot.id, plan.id
        pairs = [(family.id, kid.id) for family, kid in zip(families, kids, strict=True)]
    barrier = threading.Barrier(len(pairs))
    outcomes = []

    def book(payee_id, student_id):
        barrier.wait()
        try:
            with session_scope() as unit:
                from models.people import Payee

                hold_slot(
                    unit,
                    payee=unit.get(Payee, payee_id),
                    student_id=student_id,
                    timeslot_id=slot_id,
                    instrument="piano",
                    plan=plan_id,
                    actor="test",
                    now=NOW,
                )
            outcomes.append("held")
        except SlotTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=book, args=pair) for pair in pairs]
    with time_machine.travel(NOW, tick=True):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(outcomes) == ["held"] + ["taken"] * 19
    with Session(get_engine()) as session:
        assert len(session.exec(select(Enrollment).where(Enrollment.timeslot_id == slot_id)).all()) == 1


def test_start_date_years_ahead_is_invalid_not_a_crash(studio):
    for day in (date(9999, 12, 27), date(2030, 1, 7)):
        with pytest.raises(Invalid, match="days ahead"):
            _hold(studio, start_date=day)


def test_cancel_sees_an_expiry_committed_after_the_enrollment_was_read(studio, session):
    """cancel_enrollment re-reads the row under its lock: expired never becomes cancelled."""
    from models.errors import Conflict

    enrollment_id = _hold(studio)
    with pytest.raises(Conflict, match="expired, not live"):
        with session_scope() as unit:
            stale = unit.get(Enrollment, enrollment_id)  # read while provisional...
            # ...then the expiry job commits (raw SQL: the ORM copy stays stale).
            unit.connection().execute(sa.text("UPDATE enrollment SET status = 'expired' WHERE id = :id"), {"id": enrollment_id})
            cancel_enrollment(unit, stale, reason=None, actor="admin")
    session.expire_all()
    assert session.get(Enrollment, enrollment_id).status == "provisional"  # the refused unit rolled back


def test_the_date_range_rule_refuses_a_hold_even_when_the_taken_check_was_stale(studio, session):
    """Should the reads have missed a live enrollment of the slot, the database's date-range
    rule refuses the insert (PostgreSQL: ON CONFLICT DO NOTHING on the exclusion constraint;
    SQLite: the trigger's abort, in a savepoint) and the door reports it: no second live row."""
    from models.booking import _insert_unless_slot_held

    blocker = session.get(Enrollment, _hold(studio))

    def candidate(slot_index):
        return Enrollment(
            student_id=studio["kids"][1].id,
            timeslot_id=studio["slots"][slot_index].id,
            instrument_id=blocker.instrument_id,
            plan_id=blocker.plan_id,
            status="provisional",
            provisional_expires_at=NOW + timedelta(minutes=30),
            start_date=blocker.start_date,
            created_at=NOW,
            updated_at=NOW,
        )

    with session_scope() as unit:
        assert _insert_unless_slot_held(unit, candidate(0)) is False
    assert session.exec(select(sa.func.count(Enrollment.id)).where(Enrollment.timeslot_id == studio["slots"][0].id)).one() == 1
    with session_scope() as unit:  # a free slot: inserted, and a persistent row of the session
        row = candidate(3)
        assert _insert_unless_slot_held(unit, row) is True
        assert row.id is not None and unit.get(Enrollment, row.id) is row
    assert session.get(Enrollment, row.id).timeslot_id == studio["slots"][3].id


def test_a_hold_made_after_todays_lesson_started_begins_next_week(studio, session):
    """NOW is Tuesday 10:00 in New York; a Tuesday 09:00 slot already ran today."""
    morning = factories.timeslot(session, teacher_row=studio["teacher"], weekday=1, start="09:00")
    evening = factories.timeslot(session, teacher_row=studio["teacher"], weekday=1, start="17:00")
    session.commit()
    with session_scope() as unit:
        late = hold_slot(
            unit,
            payee=studio["payee"],
            student_id=studio["kids"][0].id,
            timeslot_id=morning.id,
            instrument="piano",
            plan=studio["plan"].id,
            actor="payee",
            now=NOW,
        )
        soon = hold_slot(
            unit,
            payee=studio["payee"],
            student_id=studio["kids"][1].id,
            timeslot_id=evening.id,
            instrument="piano",
            plan=studio["plan"].id,
            actor="payee",
            now=NOW,
        )
    assert late.start_date == date(2026, 12, 1) and soon.start_date == date(2026, 11, 24)
    # A paid assignment too (an offline one may start in the past: tests/test_slot_dates.py).
    with pytest.raises(Invalid, match="already started"):
        with session_scope() as unit:
            assign_enrollment(
                unit,
                student_id=studio["kids"][0].id,
                timeslot_id=factories.timeslot(session, teacher_row=studio["teacher"], weekday=1, start="08:00").id,
                instrument="piano",
                plan=studio["plan"].id,
                start_date=date(2026, 11, 24),
                actor="admin",
                now=NOW,
            )
