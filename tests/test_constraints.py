"""The database itself refuses what the domain forbids (direct inserts, no domain code)."""

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from models.attendance import Attendance, MakeUp
from models.billing import StripeEvent
from models.enrollment import Enrollment
from models.outbox import EmailLog
from models.scheduling import Timeslot
from tests import factories


def _enrollment(session, slot, status="active", **extra):
    student = factories.student(session)
    row = Enrollment(
        student_id=student.id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status=status,
        start_date=date(2026, 9, 7),
        provisional_expires_at=datetime.now(UTC) + timedelta(minutes=30)
        if status in ("provisional", "action_required")
        else None,
        **extra,
    )
    session.add(row)
    session.flush()
    return row


def _refused(session, make):
    with pytest.raises(sa.exc.IntegrityError):
        with session.begin_nested():
            make()


@pytest.mark.parametrize(
    "first,second",
    [
        ("active", "provisional"),
        ("provisional", "past_due"),
        ("past_due", "active"),
        ("action_required", "provisional"),
        ("active", "action_required"),
        ("paused", "provisional"),
        ("action_required", "paused"),
    ],
)
def test_second_live_enrollment_on_a_slot_is_refused(session, first, second):
    slot = factories.timeslot(session)
    _enrollment(session, slot, first)
    _refused(session, lambda: _enrollment(session, slot, second))


@pytest.mark.parametrize("dead", ["failed", "expired", "cancelled"])
def test_dead_enrollments_do_not_hold_the_slot(session, dead):
    slot = factories.timeslot(session)
    _enrollment(session, slot, dead)
    _enrollment(session, slot, dead)
    assert _enrollment(session, slot, "provisional").id


def test_a_payment_waiting_for_the_parent_must_expire(session):
    slot = factories.timeslot(session)
    student = factories.student(session)
    _refused(
        session,
        lambda: (
            session.add(
                Enrollment(
                    student_id=student.id,
                    timeslot_id=slot.id,
                    instrument_id=factories.instrument(session).id,
                    status="action_required",
                    start_date=date(2026, 9, 7),
                    provisional_expires_at=None,
                )
            ),
            session.flush(),
        ),
    )


def test_duplicate_attendance_is_refused(session):
    enrollment = _enrollment(session, factories.timeslot(session))
    session.add(Attendance(enrollment_id=enrollment.id, lesson_date=date(2026, 9, 7), status="present"))
    session.flush()
    _refused(
        session,
        lambda: (
            session.add(Attendance(enrollment_id=enrollment.id, lesson_date=date(2026, 9, 7), status="excused")),
            session.flush(),
        ),
    )


def test_two_makeups_cannot_take_one_slot_date(session):
    slot = factories.timeslot(session)
    student = factories.student(session)
    for status in ("booked",):
        session.add(
            MakeUp(
                student_id=student.id,
                status=status,
                timeslot_id=slot.id,
                lesson_date=date(2026, 9, 7),
                expires_on=date(2026, 12, 1),
            )
        )
        session.flush()
    _refused(
        session,
        lambda: (
            session.add(
                MakeUp(
                    student_id=student.id,
                    status="used",
                    timeslot_id=slot.id,
                    lesson_date=date(2026, 9, 7),
                    expires_on=date(2026, 12, 1),
                )
            ),
            session.flush(),
        ),
    )


@pytest.mark.parametrize("weekday,minute", [(7, 960), (-1, 960), (0, 965), (0, 1440)])
def test_timeslot_checks(session, weekday, minute):
    teacher = factories.teacher(session)
    _refused(
        session, lambda: (session.add(Timeslot(teacher_id=teacher.id, weekday=weekday, start_minute=minute)), session.flush())
    )


def test_duplicate_timeslot_is_refused(session):
    slot = factories.timeslot(session)
    _refused(
        session,
        lambda: (
            session.add(Timeslot(teacher_id=slot.teacher_id, weekday=slot.weekday, start_minute=slot.start_minute)),
            session.flush(),
        ),
    )


def test_negative_amount_and_unknown_status_are_refused(session):
    from models.billing import Plan

    _refused(session, lambda: (session.add(Plan(name="x", frequency="weekly", amount_cents=-1, currency="usd")), session.flush()))
    _refused(session, lambda: (session.add(Plan(name="x", frequency="daily", amount_cents=1, currency="usd")), session.flush()))
    slot = factories.timeslot(session)
    _refused(session, lambda: _enrollment(session, slot, "pending"))


def test_unique_stripe_event_and_email_dedupe(session):
    session.add(StripeEvent(stripe_event_id="evt_1", type="invoice.paid", payload={}))
    session.flush()
    _refused(
        session, lambda: (session.add(StripeEvent(stripe_event_id="evt_1", type="invoice.paid", payload={})), session.flush())
    )
    session.add(EmailLog(recipient="a@b.test", template="admin_alert", dedupe_key="k1"))
    session.flush()
    _refused(
        session, lambda: (session.add(EmailLog(recipient="a@b.test", template="admin_alert", dedupe_key="k1")), session.flush())
    )


def test_foreign_keys_are_enforced(session):
    from models.people import Student

    _refused(session, lambda: (session.add(Student(payee_id=999999, name="Orphan")), session.flush()))


def test_payee_with_students_cannot_be_deleted(session):
    student = factories.student(session)
    from models.people import Payee

    payee = session.get(Payee, student.payee_id)
    _refused(session, lambda: (session.delete(payee), session.flush()))


def test_database_errors_do_not_carry_the_values(session):
    """Bound values (emails, tokens) are not echoed by error messages or logs."""
    from models.people import Payee

    session.add(Payee(name="A", email="secret-person@family.test"))
    session.flush()
    with pytest.raises(sa.exc.IntegrityError) as caught:
        with session.begin_nested():
            session.add(Payee(name="B", email="secret-person@family.test"))
            session.flush()
    # The bound parameters are hidden (PostgreSQL's own DETAIL line may still name the key).
    assert "parameters hidden" in str(caught.value)
    assert "[parameters: (" not in str(caught.value)
