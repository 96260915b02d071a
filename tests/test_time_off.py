"""Teachers' time off and substitutes (issue 15, item 2): `studioctl teachers time-off add|list|remove`.

Without a substitute the teacher's lessons then are cancelled (teacher_cancelled, a make-up
credit and one invite each); with one they take place and every view names the substitute;
a substitute who cannot teach them is refused with the conflicts listed."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import sqlalchemy as sa
import time_machine

from models.attendance import AVAILABLE, BOOKED, TEACHER_CANCELLED, Attendance, MakeUp, book_makeup, eligible_makeup_slots
from models.audit import AuditLog
from models.enrollment import Enrollment
from models.outbox import EmailLog
from models.people import Payee
from models.time_off import TimeOff
from tests import factories
from tests.support.api import bearer
from tests.support.cli import ok, ok_json, refused, row_counts

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 10, 28, 12, 0, tzinfo=NY)  # a Wednesday
AWAY = ("--from", "2026-11-02", "--to", "2026-11-15")  # two Mondays: Nov 2 and Nov 9
MONDAYS = [date(2026, 11, 2), date(2026, 11, 9)]


def _enrollment(session, student, slot, *, start: date, semester) -> Enrollment:
    row = Enrollment(
        student_id=student.id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status="active",
        offline=True,
        start_date=start,
        semester_id=semester.id,
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def studio(session, family_a):
    """Ada (piano) teaches Ann (family A) on Mondays 16:00 and Ben on Mondays 16:30, and has a
    make-up of Cat booked on her Monday 17:00 slot on Nov 9. Sam (piano) is free; Bea (piano)
    teaches Bo on Mondays 16:00; Gus teaches guitar only. Fall 2026 to Dec 18."""
    fall = factories.semester(
        session, starts=date(2026, 9, 7), ends=date(2026, 12, 18), makeup_ends=date(2027, 1, 8), name="Fall 2026"
    )
    ada = factories.teacher(session, name="Ada Away", instruments=("piano",))
    sam = factories.teacher(session, name="Sam Stand-in", instruments=("piano",))
    bea = factories.teacher(session, name="Bea Busy", instruments=("piano",))
    gus = factories.teacher(session, name="Gus Guitar", instruments=("guitar",))
    four, half, five = (factories.timeslot(session, teacher_row=ada, weekday=0, start=at) for at in ("16:00", "16:30", "17:00"))
    bea_slot = factories.timeslot(session, teacher_row=bea, weekday=0, start="16:00")
    family = session.get(Payee, family_a.payee_id)
    ann = factories.student(session, payee_row=family, name="Ann")
    ben = factories.student(session, name="Ben")
    cat = factories.student(session, name="Cat")
    bo = factories.student(session, name="Bo")
    enrollments = {
        "ann": _enrollment(session, ann, four, start=date(2026, 10, 5), semester=fall),
        "ben": _enrollment(session, ben, half, start=date(2026, 10, 5), semester=fall),
        "bo": _enrollment(session, bo, bea_slot, start=date(2026, 10, 5), semester=fall),
    }
    credit = MakeUp(
        student_id=cat.id, instrument_id=factories.instrument(session).id, reason="recital", expires_on=date(2027, 1, 8)
    )
    session.add(credit)
    session.flush()
    with time_machine.travel(NOW, tick=False):
        book_makeup(session, credit, timeslot_id=five.id, lesson_date=MONDAYS[1], actor="admin")
    session.commit()
    return {
        "ada": ada,
        "sam": sam,
        "bea": bea,
        "gus": gus,
        "enrollments": {name: row.id for name, row in enrollments.items()},
        "makeup": credit.id,
        "slots": {"ada_four": four.id, "ada_five": five.id},
    }


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _emails(session, template: str) -> list[EmailLog]:
    session.expire_all()
    return list(session.scalars(sa.select(EmailLog).where(EmailLog.template == template).order_by(EmailLog.id)).all())


def _audits(session, action: str) -> int:
    return _count(session, AuditLog, AuditLog.action == action)


def test_time_off_without_a_substitute_cancels_every_lesson_once(session, studio):
    ada = studio["ada"]
    with time_machine.travel(NOW, tick=False):
        view = ok_json("teachers", "time-off", "add", "--teacher", ada.email, *AWAY, "--reason", "surgery")
    assert view["substitute"] is None and (view["from"], view["to"]) == ("2026-11-02", "2026-11-15")
    assert view["cancelled"] == [
        "2026-11-02 16:00 Ann (piano)",
        "2026-11-02 16:30 Ben (piano)",
        "2026-11-09 16:00 Ann (piano)",
        "2026-11-09 16:30 Ben (piano)",
        "2026-11-09 17:00 Cat (piano)",
    ]
    session.expire_all()
    marks = session.scalars(sa.select(Attendance).order_by(Attendance.lesson_date, Attendance.enrollment_id)).all()
    weekly = {studio["enrollments"]["ann"], studio["enrollments"]["ben"]}
    assert [(mark.enrollment_id in weekly, mark.lesson_date, mark.status) for mark in marks] == [
        (True, day, TEACHER_CANCELLED) for day in MONDAYS for _ in range(2)
    ]
    assert all("surgery" in mark.note and mark.taught_by_id is None for mark in marks)
    # One credit per weekly lesson, plus Cat's booked make-up given back to her.
    for mark in marks:
        assert _count(session, MakeUp, MakeUp.origin_attendance_id == mark.id, MakeUp.status == AVAILABLE) == 1
    cat = session.get(MakeUp, studio["makeup"])
    assert (cat.status, cat.timeslot_id, cat.lesson_date) == (AVAILABLE, None, None)
    invites = _emails(session, "make_up_invite")
    assert len(invites) == 5 and len({invite.dedupe_key for invite in invites}) == 5
    assert _audits(session, "time_off.add") == 1 and _audits(session, "attendance.mark") == 4
    assert _audits(session, "makeup.grant") == 4 and _audits(session, "makeup.cancel") == 1
    # Ada's slot-dates while she is away take no make-up.
    with time_machine.travel(NOW, tick=False):
        options = {(slot.id, day) for slot, day in eligible_makeup_slots(session, cat)}
    assert (studio["slots"]["ada_five"], MONDAYS[1]) not in options
    assert (studio["slots"]["ada_five"], date(2026, 11, 16)) in options
    # Running it again, or any overlapping time off, is refused and changes nothing.
    before = row_counts(session)
    with time_machine.travel(NOW, tick=False):
        refused("teachers", "time-off", "add", "--teacher", ada.email, *AWAY, message="Ada Away is already away from 2026-11-02")
        refused(
            "teachers",
            "time-off",
            "add",
            "--teacher",
            str(ada.id),
            "--from",
            "2026-11-15",
            "--to",
            "2026-11-20",
            message="already away",
        )
        refused("teachers", "time-off", "remove", str(view["id"]), message="cancelled 4 lesson(s)")
    assert row_counts(session) == before and len(_emails(session, "make_up_invite")) == 5
    with time_machine.travel(NOW, tick=False):
        listed = ok_json("teachers", "time-off", "list", "--teacher", ada.email)
    assert [(row["id"], row["reason"], row["substitute"]) for row in listed] == [(view["id"], "surgery", None)]


def test_with_a_substitute_the_lessons_take_place_and_every_view_names_them(session, client, family_a, studio):
    ada, sam = studio["ada"], studio["sam"]
    with time_machine.travel(NOW, tick=False):
        view = ok_json("teachers", "time-off", "add", "--teacher", ada.email, *AWAY, "--substitute", sam.email)
    assert view["substitute_name"] == "Sam Stand-in" and len(view["covered"]) == 5 and view["cancelled"] == []
    assert _count(session, Attendance) == 0 and _emails(session, "make_up_invite") == []
    assert session.get(MakeUp, studio["makeup"]).taught_by_id == sam.id
    assert session.get(MakeUp, studio["makeup"]).status == BOOKED
    # The dashboard.
    day = ok_json("dashboard", "today", "--date", "2026-11-09")
    ada_entries = [entry for entry in day["lessons"] if entry["teacher"] == "Ada Away"]
    assert len(ada_entries) == 3 and {entry["substitute"] for entry in ada_entries} == {"Sam Stand-in"}
    assert [entry["substitute"] for entry in day["lessons"] if entry["teacher"] == "Bea Busy"] == [None]
    after = ok_json("dashboard", "today", "--date", "2026-11-16")
    assert {entry["substitute"] for entry in after["lessons"]} == {None}
    table = ok("dashboard", "today", "--date", "2026-11-02").stdout
    assert "Stand-in" in table and "(for" in table  # "Sam Stand-in (for Ada Away)", wrapped in its column
    # The family's lessons (API) and its calendar feed.
    with time_machine.travel(NOW, tick=False):
        headers = bearer(family_a.sub, family_a.email)
        items = client.get("/parent/lessons?from=2026-11-02&to=2026-11-16", headers=headers).get_json()["items"]
        feed = client.get("/parent/calendar.ics", headers=headers)
    assert [(item["date"], item["teacher"], item["substitute"]) for item in items] == [
        ("2026-11-02", "Ada Away", "Sam Stand-in"),
        ("2026-11-09", "Ada Away", "Sam Stand-in"),
        ("2026-11-16", "Ada Away", None),
    ]
    summaries = {
        event.decoded("DTSTART").date(): str(event["SUMMARY"]) for event in icalendar.Calendar.from_ical(feed.data).walk("VEVENT")
    }
    assert summaries[date(2026, 11, 2)] == "Ann: piano with Sam Stand-in (substituting for Ada Away)"
    assert summaries[date(2026, 11, 16)] == "Ann: piano with Ada Away"
    # One substitute_notice per family, listing its lessons and naming the substitute.
    from workers.emails import render_email

    notices = _emails(session, "substitute_notice")
    assert len(notices) == 3
    [mine] = [notice for notice in notices if notice.recipient == "a@family.test"]
    rendered = render_email("substitute_notice", mine.context)
    assert "Sam Stand-in" in rendered.subject and "Ada Away is away from 2026-11-02 to 2026-11-15" in rendered.text
    assert "Mon 2026-11-02 at 16:00: Ann (piano)" in rendered.text and "Mon 2026-11-09 at 16:00: Ann (piano)" in rendered.text
    assert "Ben" not in rendered.text and "Sam Stand-in" in rendered.html
    # Marking a substituted lesson records who taught; a lesson after the time off does not.
    ann = studio["enrollments"]["ann"]
    ok("attendance", "mark", "--enrollment", ann, "--date", "2026-11-02", "--status", "present")
    ok("attendance", "mark", "--enrollment", ann, "--date", "2026-11-16", "--status", "present")
    session.expire_all()
    taught = dict(session.execute(sa.select(Attendance.lesson_date, Attendance.taught_by_id)).all())
    assert taught == {date(2026, 11, 2): sam.id, date(2026, 11, 16): None}


def test_removing_a_substitution_before_it_begins_undoes_it(session, studio):
    ada, sam = studio["ada"], studio["sam"]
    with time_machine.travel(NOW, tick=False):
        view = ok_json("teachers", "time-off", "add", "--teacher", ada.email, *AWAY, "--substitute", sam.email)
    with time_machine.travel(datetime(2026, 11, 2, 9, 0, tzinfo=NY), tick=False):
        refused("teachers", "time-off", "remove", str(view["id"]), message="began on 2026-11-02")
    with time_machine.travel(NOW, tick=False):
        assert "removed time off" in ok("teachers", "time-off", "remove", str(view["id"])).stdout
        refused("teachers", "time-off", "remove", str(view["id"]), message=f"no time off {view['id']}")
    assert _count(session, TimeOff) == 0 and session.get(MakeUp, studio["makeup"]).taught_by_id is None
    assert _audits(session, "time_off.remove") == 1 and _audits(session, "makeup.substitute") == 2
    assert ok_json("dashboard", "today", "--date", "2026-11-02")["lessons"][0]["substitute"] is None


def test_a_substitute_who_cannot_teach_the_lessons_is_refused_with_the_conflicts(session, studio):
    ada = studio["ada"]
    before = row_counts(session)
    with time_machine.travel(NOW, tick=False):
        guitar = refused(
            "teachers",
            "time-off",
            "add",
            "--teacher",
            ada.email,
            *AWAY,
            "--substitute",
            studio["gus"].email,
            message="Gus Guitar cannot substitute for Ada Away",
        )
        busy = refused(
            "teachers",
            "time-off",
            "add",
            "--teacher",
            ada.email,
            *AWAY,
            "--substitute",
            studio["bea"].email,
            message="Bea Busy cannot substitute",
        )
    assert guitar.stderr.count("Gus Guitar does not teach piano") == 5
    assert "2026-11-02 16:00 Ann (piano): Bea Busy teaches Bo then" in busy.stderr
    assert "2026-11-09 16:00 Ann (piano): Bea Busy teaches Bo then" in busy.stderr
    assert "16:30 Ben (piano): Bea Busy" not in busy.stderr  # free at 16:30
    assert row_counts(session) == before
    # A substitute away themselves, or already covering at that time, is busy too.
    sam = studio["sam"]
    with time_machine.travel(NOW, tick=False):
        ok("teachers", "time-off", "add", "--teacher", sam.email, "--from", "2026-11-09", "--to", "2026-11-09")
        away = refused(
            "teachers", "time-off", "add", "--teacher", ada.email, *AWAY, "--substitute", sam.email, message="cannot substitute"
        )
    assert "2026-11-09 16:00 Ann (piano): Sam Stand-in is away then" in away.stderr
    assert "2026-11-02" not in away.stderr


def test_a_substitute_already_covering_that_time_is_busy(session, studio):
    ada, bea, sam = studio["ada"], studio["bea"], studio["sam"]
    with time_machine.travel(NOW, tick=False):
        ok(
            "teachers",
            "time-off",
            "add",
            "--teacher",
            bea.email,
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-02",
            "--substitute",
            sam.email,
        )
        clash = refused(
            "teachers", "time-off", "add", "--teacher", ada.email, *AWAY, "--substitute", sam.email, message="cannot substitute"
        )
        # The teacher covering for Bea cannot take time off over it either.
        refused("teachers", "time-off", "add", "--teacher", sam.email, *AWAY, message="Sam Stand-in substitutes from 2026-11-02")
    assert "2026-11-02 16:00 Ann (piano): Sam Stand-in teaches Bo then" in clash.stderr
    assert "2026-11-09" not in clash.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("--teacher", "nobody@studio.test", *AWAY), "no teacher 'nobody@studio.test'"),
        (
            ("--teacher", "TEACHER", "--from", "2026-11-15", "--to", "2026-11-02"),
            "the last day (2026-11-02) is before the first (2026-11-15)",
        ),
        (("--teacher", "TEACHER", "--from", "2026-10-27", "--to", "2026-11-02"), "time off starts today (2026-10-28) or later"),
        (("--teacher", "TEACHER", "--from", "2026-11-31", "--to", "2026-12-02"), "is not a date"),
        (("--teacher", "TEACHER", *AWAY, "--substitute", "TEACHER"), "cannot substitute for themself"),
        (("--teacher", "TEACHER", "--from", "2026-11-02", "--to", "2027-12-02"), "at most 366 days"),
        (("--teacher", "TEACHER", *AWAY, "--reason", "x" * 201), "longer than 200 characters"),
        (("--teacher", "TEACHER", *AWAY, "--substitute", "nobody@studio.test"), "no teacher 'nobody@studio.test'"),
    ],
)
def test_cli_refusals_are_one_line_exit_1(session, studio, args, message):
    args = tuple(studio["ada"].email if arg == "TEACHER" else arg for arg in args)
    before = row_counts(session)
    with time_machine.travel(NOW, tick=False):
        refused("teachers", "time-off", "add", *args, message=message)
        refused("teachers", "time-off", "remove", "999", message="no time off 999")
    assert row_counts(session) == before


def test_a_lesson_marked_before_the_time_off_is_left_as_it_is(session, studio):
    """A lesson the family already called off is no lesson to cancel (its credit stands)."""
    ann = studio["enrollments"]["ann"]
    with time_machine.travel(NOW, tick=False):
        ok("attendance", "mark", "--enrollment", ann, "--date", "2026-11-02", "--status", "excused")
        view = ok_json("teachers", "time-off", "add", "--teacher", studio["ada"].email, *AWAY)
    assert "2026-11-02 16:00 Ann (piano)" not in view["cancelled"] and len(view["cancelled"]) == 4
    session.expire_all()
    mark = session.scalars(
        sa.select(Attendance).where(Attendance.lesson_date == MONDAYS[0], Attendance.enrollment_id == ann)
    ).one()
    assert mark.status == "excused"


def test_a_covering_substitute_takes_no_make_up_then_and_reminders_name_them(session, studio):
    """While Sam covers Ada's Monday 16:00, no make-up lands on Sam's own Monday 16:00 slot
    (nor on Ada's slots); after the time off both are free again. The reminder names Sam."""
    from models.reminders import queue_lesson_reminders

    sam_slot = factories.timeslot(session, teacher_row=studio["sam"], weekday=0, start="16:00")
    credit = MakeUp(student_id=factories.student(session).id, reason="flu", expires_on=date(2027, 1, 8))
    session.add(credit)
    session.commit()
    with time_machine.travel(NOW, tick=False):
        ok("teachers", "time-off", "add", "--teacher", studio["ada"].email, *AWAY, "--substitute", studio["sam"].email)
        options = {(slot.id, day) for slot, day in eligible_makeup_slots(session, credit)}
    assert (sam_slot.id, MONDAYS[0]) not in options and (sam_slot.id, MONDAYS[1]) not in options
    assert (studio["slots"]["ada_five"], MONDAYS[0]) not in options
    assert {(sam_slot.id, date(2026, 11, 16)), (studio["slots"]["ada_five"], date(2026, 11, 16))} <= options
    queue_lesson_reminders(session, now=datetime(2026, 11, 1, 18, 0, tzinfo=NY))
    [reminder] = [row for row in _emails(session, "lesson_reminder") if row.recipient == "a@family.test"]
    assert reminder.context["teacher_name"] == "Sam Stand-in" and reminder.context["lesson_date"] == "2026-11-02"


# Bookings that start taking place after the time off was recorded (models.time_off_bookings) ----


def _cancelled_by_time_off(session, enrollment_id: int) -> list[date]:
    """The enrollment's lessons marked teacher_cancelled, each checked to hold one available credit."""
    session.expire_all()
    marks = session.scalars(
        sa.select(Attendance).where(Attendance.enrollment_id == enrollment_id).order_by(Attendance.lesson_date)
    ).all()
    assert all(mark.status == TEACHER_CANCELLED and "time off" in mark.note for mark in marks)
    for mark in marks:
        assert _count(session, MakeUp, MakeUp.origin_attendance_id == mark.id, MakeUp.status == AVAILABLE) == 1
    return [mark.lesson_date for mark in marks]


def test_a_booking_activated_by_the_pipeline_after_the_time_off_has_its_lessons_in_it_cancelled_once(
    session, stripe_env, task_queue
):
    from models.enrollment import lesson_dates
    from models.scheduling import Timeslot
    from models.substitutes import add_time_off
    from tests.support.booking import add_card, local_today, provisional_booking
    from workers.tasks import book_enrollment
    from workers.time_off import cancel_lessons_in_time_off

    enrollment, payee, _, _ = provisional_booking(session, with_semester=True)
    slot = session.get(Timeslot, enrollment.timeslot_id)
    first, second, third = lesson_dates(session, enrollment, first=local_today(), last=local_today() + timedelta(days=30))[:3]
    # Recorded while the booking is a hold: it has no lesson to cancel yet.
    result = add_time_off(session, teacher=slot.teacher_id, starts_on=first, ends_on=second, actor="admin")
    session.commit()
    assert result.cancelled == []
    add_card(stripe_env.client(), payee.id)
    book_enrollment(enrollment.id)
    task_queue.run_all()
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).status == "active"
    assert _cancelled_by_time_off(session, enrollment.id) == [first, second]  # `third` is after the time off
    invites = _emails(session, "make_up_invite")
    assert len(invites) == 2 and all(invite.recipient == payee.email for invite in invites)
    assert _audits(session, "attendance.mark") == 2 and _audits(session, "makeup.grant") == 2
    # Running it again (a retry, a second activation) changes nothing.
    before = row_counts(session)
    assert cancel_lessons_in_time_off(enrollment.id) == []
    assert row_counts(session) == before and third not in _cancelled_by_time_off(session, enrollment.id)


def test_an_offline_assignment_after_the_time_off_has_its_lessons_in_it_cancelled(session, studio, task_queue):
    ada = studio["ada"]
    dan = factories.student(session, name="Dan")
    session.commit()
    with time_machine.travel(NOW, tick=False):
        ok("teachers", "time-off", "add", "--teacher", ada.email, *AWAY)
        before = _audits(session, "attendance.mark")
        view = ok_json(
            "enrollments", "assign", "--student", dan.id, "--timeslot", studio["slots"]["ada_five"],
            "--instrument", "piano", "--offline", "--start", "2026-11-02",
        )  # fmt: skip
        assert ("apply_time_off", (view["id"],)) in task_queue.pending()  # after the assignment's commit
        task_queue.run_all()
    assert _cancelled_by_time_off(session, view["id"]) == MONDAYS  # not Nov 16, after the time off
    assert _audits(session, "attendance.mark") == before + 2
    assert len([e for e in _emails(session, "make_up_invite") if "Dan" in str(e.context)]) == 2
    # The other lessons of Ada's slots were cancelled once, by the time off itself.
    assert _cancelled_by_time_off(session, studio["enrollments"]["ann"]) == MONDAYS


def test_a_booking_under_a_substitute_is_left_to_the_substitute(session, studio, task_queue):
    ada, sam = studio["ada"], studio["sam"]
    dan = factories.student(session, name="Dan")
    session.commit()
    with time_machine.travel(NOW, tick=False):
        ok("teachers", "time-off", "add", "--teacher", ada.email, *AWAY, "--substitute", sam.email)
        view = ok_json(
            "enrollments", "assign", "--student", dan.id, "--timeslot", studio["slots"]["ada_five"],
            "--instrument", "piano", "--offline", "--start", "2026-11-02",
        )  # fmt: skip
        task_queue.run_all()
    assert _count(session, Attendance, Attendance.enrollment_id == view["id"]) == 0


def test_a_paused_booking_resumed_after_the_time_off_has_its_lessons_in_it_cancelled(session, studio, task_queue):
    from models.db import session_scope
    from models.dunning import mark_paused, mark_resumed

    ben = studio["enrollments"]["ben"]
    with time_machine.travel(NOW, tick=False):
        with session_scope() as unit:
            assert mark_paused(unit, unit.get(Enrollment, ben), actor="stripe")
        view = ok_json("teachers", "time-off", "add", "--teacher", studio["ada"].email, *AWAY)
        assert not any("Ben" in label for label in view["cancelled"])  # paused: no lessons then
        with session_scope() as unit:
            assert mark_resumed(unit, unit.get(Enrollment, ben), actor="stripe")
        task_queue.run_all()
    assert _cancelled_by_time_off(session, ben) == MONDAYS
