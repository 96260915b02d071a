"""Attendance and make-up credit rules in the shared layer."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import select

from models.attendance import (
    MakeUp,
    book_makeup,
    cancel_makeup,
    eligible_makeup_slots,
    expire_makeup_credits,
    grant_makeup,
    mark_attendance,
)
from models.booking import assign_enrollment
from models.db import session_scope
from models.errors import Conflict, Invalid, SlotTaken
from models.outbox import EmailLog
from tests import factories

TODAY = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday


@pytest.fixture
def studio(session):
    with time_machine.travel(TODAY, tick=False):
        piano = factories.teacher(session, instruments=("piano",))
        drums = factories.teacher(session, instruments=("drums",))
        monday = factories.timeslot(session, teacher_row=piano, weekday=0, start="16:00")
        wednesday = factories.timeslot(session, teacher_row=piano, weekday=2, start="16:00")
        drum_slot = factories.timeslot(session, teacher_row=drums, weekday=2, start="17:00")
        semester = factories.semester(
            session,
            starts=date(2026, 9, 7),
            ends=date(2026, 12, 19),
            closures=[date(2026, 11, 30)],
            makeup_ends=date(2026, 12, 23),
        )
        kid = factories.student(session)
        other = factories.student(session)
        session.commit()
        with session_scope() as unit:
            lesson = assign_enrollment(
                unit,
                student_id=kid.id,
                timeslot_id=monday.id,
                instrument="piano",
                plan=None,
                offline=True,
                actor="admin",
                now=datetime(2026, 9, 1, tzinfo=UTC),
            )
            blocker = assign_enrollment(
                unit,
                student_id=other.id,
                timeslot_id=wednesday.id,
                instrument="piano",
                plan=None,
                offline=True,
                start_date=date(2026, 12, 9),
                actor="admin",
                now=TODAY,
            )
    with time_machine.travel(TODAY, tick=False):
        yield {
            "lesson": lesson,
            "blocker": blocker,
            "monday": monday,
            "wednesday": wednesday,
            "drum_slot": drum_slot,
            "semester": semester,
            "kid": kid,
            "other": other,
        }


def _mark(studio, day, status):
    with session_scope() as unit:
        row, credit = mark_attendance(unit, enrollment_id=studio["lesson"].id, lesson_date=day, status=status, actor="admin")
        return row.id, credit.id if credit else None


def test_excused_earns_one_credit_expiring_at_window_end_and_invites(studio, session):
    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    _mark(studio, date(2026, 11, 16), "excused")  # re-marking the same way changes nothing
    credits = session.exec(select(MakeUp)).all()
    assert [c.id for c in credits] == [credit_id]
    assert credits[0].expires_on == date(2026, 12, 23) and credits[0].status == "available"
    assert [e.template for e in session.exec(select(EmailLog)).all()] == ["make_up_invite"]


def test_no_show_earns_nothing_and_notifies(studio, session):
    _, credit_id = _mark(studio, date(2026, 11, 16), "no_show")
    assert credit_id is None and session.exec(select(MakeUp)).all() == []
    assert [e.template for e in session.exec(select(EmailLog)).all()] == ["no_show_notice"]


def test_remarking_present_revokes_an_unused_credit(studio, session):
    _mark(studio, date(2026, 11, 16), "teacher_cancelled")
    _mark(studio, date(2026, 11, 16), "present")
    assert session.exec(select(MakeUp)).all() == []


def test_remarking_is_refused_once_the_credit_is_booked(studio, session):
    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    with session_scope() as unit:
        book_makeup(
            unit, unit.get(MakeUp, credit_id), timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin"
        )
    with pytest.raises(Conflict, match="cancel it first"):
        _mark(studio, date(2026, 11, 16), "present")
    assert session.get(MakeUp, credit_id).status == "booked"


@pytest.mark.parametrize("day", [date(2026, 11, 30), date(2026, 11, 17), date(2026, 12, 28), date(2026, 9, 1)])
def test_only_real_occurrences_can_be_marked(studio, day):
    # A closure, the wrong weekday, after the semester, before the enrollment started.
    with pytest.raises(Invalid, match="not a lesson"):
        _mark(studio, day, "present")


def test_eligible_slots_skip_closures_lessons_other_instruments(studio, session):
    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    options = eligible_makeup_slots(session, session.get(MakeUp, credit_id))
    pairs = {(slot.id, day) for slot, day in options}
    monday, wednesday = studio["monday"].id, studio["wednesday"].id
    assert (wednesday, date(2026, 11, 25)) in pairs and (wednesday, date(2026, 12, 2)) in pairs
    assert (wednesday, date(2026, 12, 9)) not in pairs  # the blocker's lessons start then
    # The kid's own Monday slot is taken every week of the semester; only the make-up window's
    # week after the semester ends is free there.
    assert {day for slot, day in pairs if slot == monday} == {date(2026, 12, 21)}
    assert not any(slot == studio["drum_slot"].id for slot, _ in pairs)  # not a piano teacher
    assert all(date(2026, 11, 25) <= day <= date(2026, 12, 23) for _, day in pairs)


def test_two_makeups_cannot_take_one_slot_date(studio, session):
    _, first = _mark(studio, date(2026, 11, 16), "excused")
    _, second = _mark(studio, date(2026, 11, 9), "teacher_cancelled")
    with session_scope() as unit:
        book_makeup(
            unit, unit.get(MakeUp, first), timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin"
        )
    with pytest.raises(SlotTaken):
        with session_scope() as unit:
            book_makeup(
                unit, unit.get(MakeUp, second), timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin"
            )
    assert session.get(MakeUp, second).status == "available"
    templates = [e.template for e in session.exec(select(EmailLog).order_by(EmailLog.id)).all()]
    assert templates.count("make_up_confirmation") == 1


def test_booking_refuses_lesson_dates_closures_and_outside_window(studio, session):
    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    cases = [
        (studio["wednesday"].id, date(2026, 12, 9), SlotTaken),  # the blocker's lesson
        (studio["monday"].id, date(2026, 11, 30), Invalid),  # closure
        (studio["wednesday"].id, date(2027, 1, 6), Invalid),  # after the window
        (studio["wednesday"].id, date(2026, 11, 26), Invalid),  # not a Wednesday
        (studio["drum_slot"].id, date(2026, 11, 25), Invalid),  # teacher doesn't teach piano
    ]
    for slot_id, day, error in cases:
        with pytest.raises(error):
            with session_scope() as unit:
                book_makeup(unit, unit.get(MakeUp, credit_id), timeslot_id=slot_id, lesson_date=day, actor="admin")
    assert session.get(MakeUp, credit_id).status == "available"


def test_cancel_returns_the_credit_and_expiry_job(studio, session):
    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    with session_scope() as unit:
        book_makeup(
            unit, unit.get(MakeUp, credit_id), timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin"
        )
        cancel_makeup(unit, unit.get(MakeUp, credit_id), actor="admin")
    assert session.get(MakeUp, credit_id).status == "available"
    with session_scope() as unit:
        granted = grant_makeup(unit, student_id=studio["kid"].id, reason="recital week", actor="admin")
        book_makeup(unit, granted, timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin")
    with session_scope() as unit:
        assert expire_makeup_credits(unit, today=date(2026, 11, 26)) == (0, 1)
        assert expire_makeup_credits(unit, today=date(2026, 12, 24)) == (1, 0)
        assert expire_makeup_credits(unit, today=date(2026, 12, 24)) == (0, 0)
    session.expire_all()
    assert session.get(MakeUp, credit_id).status == "expired"
    assert session.get(MakeUp, granted.id).status == "used"


def test_a_day_with_history_cannot_become_a_closure(studio, session):
    from models.scheduling import Semester
    from models.terms import add_closure

    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    semester = session.get(Semester, studio["semester"].id)
    with pytest.raises(Conflict, match="attendance is already marked"):
        with session_scope() as unit:
            add_closure(unit, semester=unit.get(Semester, semester.id), closed_on=date(2026, 11, 16), actor="admin")
    with session_scope() as unit:
        book_makeup(
            unit, unit.get(MakeUp, credit_id), timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin"
        )
    with pytest.raises(Conflict, match="cancel it"):
        with session_scope() as unit:
            add_closure(unit, semester=unit.get(Semester, semester.id), closed_on=date(2026, 11, 25), actor="admin")
    with session_scope() as unit:
        add_closure(unit, semester=unit.get(Semester, semester.id), closed_on=date(2026, 11, 23), actor="admin")


def test_a_new_enrollment_starts_after_a_booked_makeup_on_its_slot(studio, session):
    """A booked make-up owns its slot-date: a weekly lesson booked later never lands on it."""
    from models.enrollment import lesson_dates

    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    with session_scope() as unit:
        book_makeup(
            unit, unit.get(MakeUp, credit_id), timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin"
        )
    # The blocker holds the Wednesday from 12-09; free it, then book the slot from today.
    from models.enrollment import Enrollment, cancel_enrollment

    with session_scope() as unit:
        cancel_enrollment(unit, unit.get(Enrollment, studio["blocker"].id), reason=None, actor="admin")
    with session_scope() as unit:
        enrollment = assign_enrollment(
            unit,
            student_id=studio["other"].id,
            timeslot_id=studio["wednesday"].id,
            instrument="piano",
            plan=None,
            offline=True,
            actor="admin",
        )
        dates = lesson_dates(unit, enrollment)
    assert date(2026, 11, 25) not in dates
    assert enrollment.start_date == date(2026, 12, 2)


def test_one_credit_booked_twice_at_once_is_booked_once(studio, session):
    """The second booking of a credit, holding a copy read before the first committed, is refused."""
    _, credit_id = _mark(studio, date(2026, 11, 16), "excused")
    with pytest.raises(Conflict, match="not available"):
        with session_scope() as unit:
            stale = unit.get(MakeUp, credit_id)  # read while still available...
            # ...then another request books it and commits (raw SQL: the ORM copy stays stale).
            unit.connection().execute(
                sa.text("UPDATE makeup SET status = 'booked', timeslot_id = :slot, lesson_date = :day WHERE id = :id"),
                {"slot": studio["monday"].id, "day": date(2026, 12, 21), "id": credit_id},
            )
            book_makeup(unit, stale, timeslot_id=studio["wednesday"].id, lesson_date=date(2026, 11, 25), actor="admin")
    templates = [e.template for e in session.exec(select(EmailLog)).all()]
    assert "make_up_confirmation" not in templates
