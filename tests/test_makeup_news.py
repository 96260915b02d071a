"""Make-up slots announced (issue 14): a lesson a family calls off frees its slot-date for a
make-up, the families holding a fitting credit get one `makeup_slots_available` a day at most
(never about their own student's date), and two families booking the announced date get one
booking. Both engines (the race on PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlmodel import select

from models.absences import mark_lesson, report_absence
from models.attendance import MakeUp, book_makeup, eligible_makeup_slots, grant_makeup
from models.booking import assign_enrollment
from models.db import session_scope
from models.errors import Conflict, SlotTaken
from models.outbox import EmailLog
from tests import factories
from workers.periodic import JOBS, run_job

TODAY = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 10:00 in New York
FREED, LATER = date(2026, 12, 7), date(2026, 12, 14)  # Mondays of the Fall semester


@pytest.fixture
def studio(session):
    """Ada (family A) on the piano teacher's Mondays; Ben (family B) holds a piano credit, Cleo
    (family C) a drums credit, and Ada's brother Al a piano credit."""
    with time_machine.travel(TODAY, tick=False):
        piano = factories.teacher(session, name="Ms Keys", instruments=("piano",))
        factories.teacher(session, instruments=("drums",))
        monday = factories.timeslot(session, teacher_row=piano, weekday=0, start="16:00")
        factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), makeup_ends=date(2026, 12, 23))
        family_a, family_b, family_c = (factories.payee(session, email=f"{n}@family.test") for n in "abc")
        ada = factories.student(session, payee_row=family_a, name="Ada")
        al = factories.student(session, payee_row=family_a, name="Al")
        ben = factories.student(session, payee_row=family_b, name="Ben")
        cleo = factories.student(session, payee_row=family_c, name="Cleo")
        session.commit()
        with session_scope() as unit:
            lesson = assign_enrollment(
                unit, student_id=ada.id, timeslot_id=monday.id, instrument="piano", plan=None, offline=True, actor="admin"
            )
            credits = {
                student.name: grant_makeup(unit, student_id=student.id, reason="recital", instrument=instrument, actor="admin").id
                for student, instrument in ((ben, "piano"), (cleo, "drums"), (al, "piano"))
            }
    with time_machine.travel(TODAY, tick=False):
        yield {"lesson": lesson, "monday": monday, "credits": credits, "payees": (family_a.id, family_b.id, family_c.id)}


def _call_off(studio, day: date) -> None:
    with session_scope() as unit:
        absence = report_absence(
            unit, payee_id=studio["payees"][0], enrollment_id=studio["lesson"].id, lesson_date=day, reason="flu", actor="payee"
        )
        assert absence.attendance.status == "excused"


def _announcements(session) -> list[tuple[str, str, list[str]]]:
    session.expire_all()
    rows = session.exec(select(EmailLog).where(EmailLog.template == "makeup_slots_available").order_by(EmailLog.id)).all()
    return [(row.recipient, row.dedupe_key, [view["date"] for view in row.context["dates"]]) for row in rows]


def test_a_called_off_lesson_is_announced_once_a_day_to_the_other_families_holding_a_fitting_credit(studio, session):
    assert JOBS["announce_makeup_slots"].schedule == "hourly"
    monday, family_b = studio["monday"].id, studio["payees"][1]
    ben_credit = session.get(MakeUp, studio["credits"]["Ben"])

    def free_mondays() -> set[date]:
        session.expire_all()
        return {day for slot, day in eligible_makeup_slots(session, ben_credit) if slot.id == monday}

    assert FREED not in free_mondays()  # Ada's lesson
    assert run_job("announce_makeup_slots") == {"families": [], "dates": 0}
    _call_off(studio, FREED)
    assert FREED in free_mondays() and LATER not in free_mondays()
    assert run_job("announce_makeup_slots") == {"families": [family_b], "dates": 1}
    # Ben's family only: Cleo's credit is for drums, and Al's family freed the date itself.
    assert _announcements(session) == [("b@family.test", f"makeup-slots:{family_b}:2026-11-24", ["2026-12-07"])]
    [email] = session.exec(select(EmailLog).where(EmailLog.template == "makeup_slots_available")).all()
    assert email.context["dates"][0] | {"students": ["Ben"]} == {
        "timeslot_id": monday,
        "date": "2026-12-07",
        "weekday": "Mon",
        "time": "16:00",
        "start_minute": 960,
        "teacher_name": "Ms Keys",
        "students": ["Ben"],
        "makeup_ids": [ben_credit.id],
    }
    from workers.emails import render_email

    rendered = render_email("makeup_slots_available", email.context)
    assert "1 new make-up date for Ben" in rendered.subject
    assert "Mon 2026-12-07 at 16:00 with Ms Keys, for Ben" in rendered.text and "America/New_York" in rendered.text

    # The same day, Ada calls off another lesson: no second email today...
    with time_machine.travel(TODAY + timedelta(hours=3), tick=False):
        _call_off(studio, LATER)
        assert run_job("announce_makeup_slots") == {"families": [], "dates": 0}
    assert len(_announcements(session)) == 1
    # ...the next day's lists the new date only (the first was announced already).
    with time_machine.travel(TODAY + timedelta(days=1), tick=False):
        assert run_job("announce_makeup_slots") == {"families": [family_b], "dates": 1}
        assert run_job("announce_makeup_slots") == {"families": [], "dates": 0}  # run again: nothing more
    assert _announcements(session)[1:] == [("b@family.test", f"makeup-slots:{family_b}:2026-11-25", ["2026-12-14"])]

    # Ben books the announced date; Ada's lesson cannot be marked taught over his make-up.
    with session_scope() as unit:
        book_makeup(unit, unit.get(MakeUp, ben_credit.id), timeslot_id=monday, lesson_date=FREED, actor="payee")
    with pytest.raises(Conflict, match="make-up .* is booked in its place"):
        with session_scope() as unit:
            mark_lesson(unit, enrollment_id=studio["lesson"].id, lesson_date=FREED, status="present", actor="admin")
    with session_scope() as unit:  # the other called-off date still can be (nobody took it)
        assert mark_lesson(unit, enrollment_id=studio["lesson"].id, lesson_date=LATER, status="present", actor="admin")
    with time_machine.travel(TODAY + timedelta(days=2), tick=False):
        assert run_job("announce_makeup_slots") == {"families": [], "dates": 0}  # both dates taken now


def test_a_taken_or_unfitting_date_is_not_announced(studio, session):
    _call_off(studio, FREED)
    with session_scope() as unit:  # Al (Ada's brother) takes the date before the job runs
        book_makeup(
            unit, unit.get(MakeUp, studio["credits"]["Al"]), timeslot_id=studio["monday"].id, lesson_date=FREED, actor="admin"
        )
    assert run_job("announce_makeup_slots") == {"families": [], "dates": 0}
    assert _announcements(session) == []


def test_a_make_up_given_up_again_frees_its_date_for_the_other_families(studio, session):
    from models.attendance import cancel_makeup

    tuesday = factories.timeslot(session, teacher_row=session.get(factories.Teacher, studio["monday"].teacher_id), weekday=1)
    session.commit()
    family_a, family_b, _ = studio["payees"]
    with session_scope() as unit:  # Ben takes a free Tuesday for his make-up: nothing to announce
        book_makeup(
            unit, unit.get(MakeUp, studio["credits"]["Ben"]), timeslot_id=tuesday.id, lesson_date=date(2026, 12, 8), actor="payee"
        )
    assert run_job("announce_makeup_slots") == {"families": [], "dates": 0}
    with time_machine.travel(TODAY + timedelta(hours=1), tick=False):
        with session_scope() as unit:  # ...and gives it up: the date is news for Al's family, not Ben's
            cancel_makeup(unit, unit.get(MakeUp, studio["credits"]["Ben"]), actor="admin")
    with time_machine.travel(TODAY + timedelta(hours=2), tick=False):
        assert run_job("announce_makeup_slots") == {"families": [family_a], "dates": 1}
    assert _announcements(session) == [("a@family.test", f"makeup-slots:{family_a}:2026-11-24", ["2026-12-08"])]


def _announce_counting_statements() -> tuple[dict, int]:
    from sqlalchemy import event

    from models.db import get_engine
    from models.makeup_news import announce_makeup_slots

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        # The reads only: each message queued is its own insert with its own check of its key.
        queueing = statement.lstrip().upper().startswith(("INSERT", "SAVEPOINT", "RELEASE")) or "dedupe_key = " in statement
        if not queueing:
            statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope() as unit:
            announced = announce_makeup_slots(unit)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return announced, len(statements)


def test_a_family_that_reads_texts_gets_the_first_date_by_sms_and_the_reads_do_not_grow_with_families(studio, session):
    from models.people import Payee
    from models.sms import SmsLog
    from workers.sms_gateway import MAX_SMS_CHARS, render_sms

    family_b = studio["payees"][1]
    with session_scope() as unit:
        payee = unit.get(Payee, family_b)
        payee.remind_by_sms, payee.phone = True, "+12125550123"
    _call_off(studio, FREED)
    _call_off(studio, LATER)
    announced, few = _announce_counting_statements()
    assert announced == {family_b: ["2026-12-07", "2026-12-14"]}
    [text] = session.exec(select(SmsLog).where(SmsLog.template == "makeup_slots_available")).all()
    assert (text.recipient, text.dedupe_key) == ("+12125550123", f"makeup-slots:{family_b}:2026-11-24:sms")
    body = render_sms("makeup_slots_available", text.context)
    assert "for Ben: Mon 2026-12-07 at 16:00 EST (and 1 more date in your email)" in body and len(body) <= MAX_SMS_CHARS
    # Ten more families with fitting credits: the job reads with as many statements as before.
    with session_scope() as unit:
        for n in range(10):
            student = factories.student(unit, payee_row=factories.payee(unit, email=f"more{n}@family.test"))
            grant_makeup(unit, student_id=student.id, reason="recital", instrument="piano", actor="admin")
    with time_machine.travel(TODAY + timedelta(days=1), tick=False):
        announced, many = _announce_counting_statements()
    assert len(announced) == 10 and family_b not in announced  # Ben's family was told of both dates already
    assert many == few, (few, many)


@pytest.mark.postgres
def test_two_families_booking_the_one_announced_date_at_once_get_one_booking(committed_db):
    with time_machine.travel(TODAY, tick=False):
        with session_scope() as unit:
            teacher = factories.teacher(unit, instruments=("piano",))
            slot = factories.timeslot(unit, teacher_row=teacher, weekday=0, start="16:00")
            factories.semester(unit, starts=date(2026, 9, 7), ends=date(2026, 12, 19), makeup_ends=date(2026, 12, 23))
            holder = factories.student(unit)
            racers = [factories.student(unit) for _ in range(2)]
            unit.flush()
            lesson = assign_enrollment(
                unit, student_id=holder.id, timeslot_id=slot.id, instrument="piano", plan=None, offline=True, actor="admin"
            )
            credit_ids = [
                grant_makeup(unit, student_id=racer.id, reason="recital", instrument="piano", actor="admin").id
                for racer in racers
            ]
            slot_id, lesson_id, payee_id = slot.id, lesson.id, holder.payee_id
        with session_scope() as unit:
            report_absence(unit, payee_id=payee_id, enrollment_id=lesson_id, lesson_date=FREED, reason=None, actor="payee")
        assert len(run_job("announce_makeup_slots")["families"]) == 2
        barrier = threading.Barrier(2)
        outcomes: list = [None, None]

        def book(index: int) -> None:
            barrier.wait()
            try:
                with session_scope() as unit:
                    outcomes[index] = book_makeup(
                        unit, unit.get(MakeUp, credit_ids[index]), timeslot_id=slot_id, lesson_date=FREED, actor="payee"
                    ).status
            except SlotTaken as error:
                outcomes[index] = error

        threads = [threading.Thread(target=book, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(map(str, outcomes)) == sorted(["booked", f"timeslot {slot_id} on {FREED} is taken"])
    with session_scope(write=False) as unit:
        booked = unit.exec(select(MakeUp).where(MakeUp.lesson_date == FREED, MakeUp.status == "booked")).all()
        assert len(booked) == 1
