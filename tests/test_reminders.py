"""Lesson reminders (issue 14, Reminders): `send_lesson_reminders` queues one `lesson_reminder`
per lesson and channel REMINDER_HOURS_BEFORE ahead, whatever the runs; none on closures, for
called-off lessons, holds or paused bookings; real hours across DST, worded in the studio's
zone of that date. SMS templates stay within 320 characters. Both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlmodel import col, select

from models.attendance import MakeUp, mark_attendance
from models.config import get_settings
from models.enrollment import Enrollment
from models.errors import Invalid
from models.outbox import EmailLog
from models.reminders import queue_lesson_reminders, set_reminders
from models.sms import SmsLog
from tests import factories
from workers.emails import render_email
from workers.periodic import JOBS, run_job
from workers.sms_gateway import MAX_SMS_CHARS, render_sms

NY = ZoneInfo("America/New_York")
PHONE = "+12125550123"


def _enrollment(session, student, slot, *, start: date, status: str = "active", semester=None) -> Enrollment:
    row = Enrollment(
        student_id=student.id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status=status,
        offline=True,
        start_date=start,
        semester_id=semester.id if semester else None,
        provisional_expires_at=datetime.now(UTC) + timedelta(minutes=30) if status == "provisional" else None,
    )
    session.add(row)
    session.flush()
    return row


def _family(session, *, sms: bool = True, name: str = "Ada"):
    payee = factories.payee(session)
    if sms:
        set_reminders(session, payee, sms=True, phone="(212) 555-0123", actor="test")
    return payee, factories.student(session, payee_row=payee, name=name)


def _reminders(session) -> tuple[list[str], list[str]]:
    emails = session.exec(select(EmailLog.dedupe_key).where(col(EmailLog.template) == "lesson_reminder")).all()
    texts = session.exec(select(SmsLog.dedupe_key)).all()
    return sorted(emails), sorted(texts)


def test_one_reminder_per_lesson_and_channel_across_repeated_runs(session):
    semester = factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19))
    teacher = factories.teacher(session, name="Clara")
    monday = factories.timeslot(session, teacher_row=teacher, weekday=0, start="16:00")
    payee, ada = _family(session)
    weekly = _enrollment(session, ada, monday, start=date(2026, 9, 7), semester=semester)
    # Sunday Oct 18, 17:00: Monday's 16:00 lesson is 23 hours away.
    for hours_later in (0, 0, 1, 5, 20, 22):
        queue_lesson_reminders(session, now=datetime(2026, 10, 18, 17, 0, tzinfo=NY) + timedelta(hours=hours_later))
    key = f"reminder:lesson-{weekly.id}:2026-10-19"
    assert _reminders(session) == ([f"{key}:email"], [f"{key}:sms"])
    sms = session.exec(select(SmsLog)).one()
    assert sms.recipient == PHONE and sms.status == "queued"
    email = session.exec(select(EmailLog).where(col(EmailLog.template) == "lesson_reminder")).one()
    assert email.recipient == payee.email
    assert email.context["time"] == "16:00" and email.context["zone"] == "EDT" and email.context["weekday"] == "Mon"
    rendered = render_email("lesson_reminder", email.context)
    assert "Mon 2026-10-19 at 16:00 EDT (America/New_York)" in rendered.text and "Ada" in rendered.subject
    # The next week's lesson is reminded on its own, once.
    for hours_later in (0, 3):
        queue_lesson_reminders(session, now=datetime(2026, 10, 25, 17, 0, tzinfo=NY) + timedelta(hours=hours_later))
    emails, texts = _reminders(session)
    assert len(emails) == len(texts) == 2 and f"reminder:lesson-{weekly.id}:2026-10-26:sms" in texts


def test_the_job_runs_hourly_and_sends_each_reminder_once(session, task_queue):
    assert JOBS["send_lesson_reminders"].schedule == "hourly"
    teacher = factories.teacher(session, name="Clara")
    slot = factories.timeslot(session, teacher_row=teacher, weekday=1, start="15:30")  # Tuesdays
    _, ada = _family(session)
    _enrollment(session, ada, slot, start=date(2026, 9, 1))
    session.commit()
    for hour in range(14, 20):  # Monday afternoon, every hour
        with time_machine.travel(datetime(2026, 10, 19, hour, 11, tzinfo=NY), tick=False):
            run_job("send_lesson_reminders")
            task_queue.run_all()  # the sends, through the file backends
    emails, texts = _reminders(session)
    assert len(emails) == 1 and len(texts) == 1
    assert session.exec(select(SmsLog.status)).all() == ["sent"]
    outbox = Path(get_settings().OUTBOX_DIR)
    assert len(list((outbox / "sms").glob("*-lesson_reminder.txt"))) == 1
    assert len(list(outbox.glob("*-lesson_reminder.eml"))) == 1


def test_no_reminder_on_closures_called_off_lessons_holds_or_paused_bookings(session):
    closed = date(2026, 11, 9)  # a Monday
    semester = factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19), closures=[closed])
    teacher = factories.teacher(session, name="Clara")
    monday, tuesday, wednesday, thursday = (
        factories.timeslot(session, teacher_row=teacher, weekday=day, start="16:00") for day in range(4)
    )
    _, ada = _family(session)
    _, ben = _family(session, sms=False, name="Ben")
    weekly = _enrollment(session, ada, monday, start=date(2026, 9, 7), semester=semester)
    excused = _enrollment(session, ben, tuesday, start=date(2026, 9, 8), semester=semester)
    _enrollment(session, ben, wednesday, start=date(2026, 9, 9), status="paused")
    _enrollment(session, ada, thursday, start=date(2026, 11, 12), status="provisional")
    mark_attendance(session, enrollment_id=excused.id, lesson_date=date(2026, 11, 10), status="excused", actor="admin")
    # A make-up on the closed Monday is no lesson either.
    session.add(
        MakeUp(
            student_id=ada.id,
            instrument_id=factories.instrument(session).id,
            status="booked",
            timeslot_id=monday.id,
            lesson_date=closed,
            expires_on=date(2026, 12, 19),
        )
    )
    session.flush()
    start = datetime(2026, 11, 8, 0, 0, tzinfo=NY)
    for hour in range(0, 24 * 5):  # every hour of the week of Nov 8
        queue_lesson_reminders(session, now=start + timedelta(hours=hour))
    assert _reminders(session) == ([], [])
    # The week after: every booking reminded as usual (Ada's Monday by both channels, Ben's Tuesday by email).
    for hour in range(0, 24 * 2 + 1):
        queue_lesson_reminders(session, now=datetime(2026, 11, 15, 0, 0, tzinfo=NY) + timedelta(hours=hour))
    emails, texts = _reminders(session)
    assert emails == [f"reminder:lesson-{weekly.id}:2026-11-16:email", f"reminder:lesson-{excused.id}:2026-11-17:email"]
    assert texts == [f"reminder:lesson-{weekly.id}:2026-11-16:sms"]


def test_a_booked_makeup_is_reminded(session):
    teacher = factories.teacher(session, name="Clara")
    wednesday = factories.timeslot(session, teacher_row=teacher, weekday=2, start="17:00")
    _, ada = _family(session)
    makeup = MakeUp(
        student_id=ada.id,
        instrument_id=factories.instrument(session).id,
        status="booked",
        timeslot_id=wednesday.id,
        lesson_date=date(2026, 11, 4),
        expires_on=date(2026, 12, 19),
    )
    session.add(makeup)
    session.flush()
    queue_lesson_reminders(session, now=datetime(2026, 11, 3, 18, 0, tzinfo=NY))
    key = f"reminder:makeup-{makeup.id}:2026-11-04"
    assert _reminders(session) == ([f"{key}:email"], [f"{key}:sms"])
    assert "make-up lesson Wed 2026-11-04 at 17:00 EST" in render_sms(
        "lesson_reminder", session.exec(select(SmsLog)).one().context
    )


@pytest.mark.parametrize(
    ("now", "due"),
    [
        # Sunday Mar 8, 2026 10:00 EDT (14:00 UTC); clocks went forward at 02:00 that morning.
        (datetime(2026, 3, 7, 8, 30, tzinfo=NY), False),  # 24.5 real hours ahead (25.5 by the wall clock)
        (datetime(2026, 3, 7, 9, 30, tzinfo=NY), True),  # 23.5 real hours ahead, 24.5 by the wall clock
        (datetime(2026, 3, 8, 10, 0, tzinfo=NY), False),  # started
    ],
)
def test_dst_week_counts_real_hours_and_names_the_new_offset(session, now, due):
    teacher = factories.teacher(session, name="Clara")
    sunday = factories.timeslot(session, teacher_row=teacher, weekday=6, start="10:00")
    _, ada = _family(session)
    weekly = _enrollment(session, ada, sunday, start=date(2026, 2, 1))
    queued = queue_lesson_reminders(session, now=now)
    assert queued.email == ([f"lesson-{weekly.id}:2026-03-08"] if due else [])
    if due:
        context = session.exec(select(SmsLog)).one().context
        assert (context["time"], context["zone"], context["starts_at"]) == ("10:00", "EDT", "2026-03-08T10:00:00-04:00")
        # The week before was EST.
        queue_lesson_reminders(session, now=datetime(2026, 2, 28, 12, 0, tzinfo=NY))
        before = session.exec(select(SmsLog).where(col(SmsLog.dedupe_key).contains("2026-03-01"))).one()
        assert before.context["zone"] == "EST"


def test_the_job_finds_the_same_lessons_on_the_wall_clock_under_time_machine(session):
    """DST end (Nov 1, 2026): Monday Nov 2 16:00 EST is reminded on Sunday, at 16:00 EST or later."""
    teacher = factories.teacher(session, name="Clara")
    monday = factories.timeslot(session, teacher_row=teacher, weekday=0, start="16:00")
    _, ada = _family(session)
    _enrollment(session, ada, monday, start=date(2026, 9, 7))
    session.commit()
    with time_machine.travel(datetime(2026, 11, 1, 15, 30, tzinfo=NY), tick=False):
        assert run_job("send_lesson_reminders")["email"] == []
    with time_machine.travel(datetime(2026, 11, 1, 16, 30, tzinfo=NY), tick=False):
        assert len(run_job("send_lesson_reminders")["email"]) == 1


def test_sms_needs_a_valid_phone_stored_in_e164(session):
    payee = factories.payee(session)
    with pytest.raises(Invalid) as refused:
        set_reminders(session, payee, sms=True, actor="test")
    assert refused.value.field == "phone"
    with pytest.raises(Invalid):
        set_reminders(session, payee, sms=True, phone="12345", actor="test")
    set_reminders(session, payee, sms=True, email=False, phone="+44 20 7946 0958", actor="test")
    assert (payee.phone, payee.remind_by_sms, payee.remind_by_email) == ("+442079460958", True, False)
    set_reminders(session, payee, phone="", actor="test")  # no phone: no SMS
    assert (payee.phone, payee.remind_by_sms) == (None, False)


def test_sms_templates_stay_within_320_characters_with_long_names(session, monkeypatch):
    monkeypatch.setenv("STUDIO_NAME", "The Extraordinarily Long-Named Conservatory of Music and Performing Arts")
    from models.config import reset_settings

    reset_settings()
    long = "Maximilian-Alexander " * 8
    context = {
        "payee_name": long,
        "student_name": long,
        "teacher_name": long,
        "instrument": "contrabassoon " * 5,
        "kind": "makeup",
        "weekday": "Wed",
        "lesson_date": "2026-11-04",
        "time": "17:00",
        "zone": "EST",
        "timezone": "America/Argentina/ComodRivadavia",
        "starts_at": "2026-11-04T17:00:00-05:00",
        "more": 12,  # a make-up announcement's further dates
    }
    from models.sms import SMS_TEMPLATES

    for template in SMS_TEMPLATES:
        text = render_sms(template, context)
        assert len(text) <= MAX_SMS_CHARS and "2026-11-04 at 17:00 EST" in text
        assert not text.endswith("…")  # fits by its own design, not by the cut


def test_the_family_chooses_its_channels_through_the_api(client, family_a, session):
    from models.audit import AuditLog
    from models.people import Payee
    from tests.support.api import assert_problem

    assert client.get("/parent/payee", headers=family_a.headers).get_json()["reminders"] == {"email": True, "sms": False}
    refused = client.patch("/parent/payee", json={"reminders": {"sms": True}}, headers=family_a.headers)
    assert_problem(refused, 422, "invalid")
    assert_problem(
        client.patch("/parent/payee", json={"phone": "12", "reminders": {"sms": True}}, headers=family_a.headers), 422, "invalid"
    )
    answer = client.patch(
        "/parent/payee", json={"phone": "(212) 555-0123", "reminders": {"sms": True, "email": False}}, headers=family_a.headers
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["reminders"] == {"email": False, "sms": True} and body["phone"] == PHONE
    # PUT takes the same field; what is left out is unchanged.
    again = client.put("/parent/payee", json={"reminders": {"email": True}}, headers=family_a.headers).get_json()
    assert again["reminders"] == {"email": True, "sms": True} and again["phone"] == PHONE
    session.expire_all()
    payee = session.get(Payee, family_a.payee_id)
    assert (payee.remind_by_email, payee.remind_by_sms, payee.phone) == (True, True, PHONE)
    audits = session.exec(select(AuditLog).where(col(AuditLog.action) == "payee.reminders")).all()
    assert [row.actor for row in audits] == [f"payee:{payee.id}"] * 2


def test_patch_needs_a_payee_first(client):
    from tests.support.api import assert_problem, bearer

    assert_problem(
        client.patch("/parent/payee", json={"reminders": {"email": False}}, headers=bearer("nobody", "nobody@family.test")), 403
    )


def test_two_runs_at_once_queue_each_reminder_once(committed_db):
    """Two consumers (no shared lock) running the reminders at the same moment, 10 times over:
    one row per lesson and channel each time, and neither run fails."""
    import threading

    from models.db import session_scope

    with session_scope() as work:
        teacher = factories.teacher(work, name="Clara")
        slots = [factories.timeslot(work, teacher_row=teacher, weekday=0, start=f"{hour}:00") for hour in (15, 16, 17)]
        for slot in slots:
            _, student = _family(work)
            _enrollment(work, student, slot, start=date(2026, 9, 7))
    errors: list[BaseException] = []
    for week in range(10):
        now = datetime(2026, 9, 13, 18, 0, tzinfo=NY) + timedelta(weeks=week)  # Sundays, 18:00
        barrier = threading.Barrier(2)

        def run(now=now, barrier=barrier) -> None:
            try:
                barrier.wait()
                with session_scope() as work:
                    queue_lesson_reminders(work, now=now)
            except BaseException as error:  # noqa: BLE001 — reported below
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    with session_scope(write=False) as work:
        emails, texts = _reminders(work)
    assert len(emails) == len(set(emails)) == 30 and len(texts) == len(set(texts)) == 30
