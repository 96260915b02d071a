"""Emails: every template renders with real data; sending once through the file and Mailjet backends."""

from __future__ import annotations

import email
from datetime import timedelta

import pytest
from sqlmodel import select

from models import attendance, changes, dunning, makeup_news, offers, payment_action, substitutes, waitlist
from models import enrollment as enrollment_ops
from models.config import reset_settings
from models.outbox import TEMPLATES, DeadLetter, EmailLog, queue_admin_alert, queue_email
from tests import factories
from tests.support.booking import provisional_booking


def _real_emails(session) -> dict[str, EmailLog]:
    """Drive real domain operations until every template has been queued once with real data."""
    enrollment, payee, plan, semester = provisional_booking(session, frequency="semester", amount_cents=3200)
    student = session.get(enrollment_ops.Student, enrollment.student_id)
    student.name = "Zoë <script>alert(1)</script> & Co"
    session.add(student)
    session.flush()
    queue_email(
        session,
        template="provisional_notice",
        recipient=payee.email,
        context=enrollment_ops.email_context(session, enrollment),
        dedupe_key=f"provisional_notice:{enrollment.id}",
    )
    enrollment_ops.activate_enrollment(session, enrollment, actor="worker", payment_intent_id="pi_test")
    first, second = enrollment_ops.lesson_dates(session, enrollment)[:2]
    attendance.mark_attendance(session, enrollment_id=enrollment.id, lesson_date=first, status="no_show", actor="admin")
    _, credit = attendance.mark_attendance(
        session, enrollment_id=enrollment.id, lesson_date=second, status="excused", actor="admin"
    )
    booked_slot = session.get(enrollment_ops.Timeslot, enrollment.timeslot_id)
    factories.timeslot(
        session,
        teacher_row=session.get(enrollment_ops.Teacher, booked_slot.teacher_id),
        weekday=booked_slot.weekday,
        start="17:30",
    )
    slot, day = attendance.eligible_makeup_slots(session, credit)[0]
    attendance.book_makeup(session, credit, timeslot_id=slot.id, lesson_date=day, actor="admin")
    dunning.mark_past_due(session, enrollment, actor="worker")
    # Zoë's third lesson, reminded half a day ahead (a past_due booking still has its lessons).
    from models.clock import occurrence_start
    from models.config import get_settings
    from models.reminders import queue_lesson_reminders

    third = enrollment_ops.lesson_dates(session, enrollment)[2]
    starts = occurrence_start(third, booked_slot.start_minute, get_settings().tz)
    queue_lesson_reminders(session, now=starts - timedelta(hours=12))
    other, _, _, _ = provisional_booking(session, frequency="monthly")
    other.provisional_expires_at = enrollment_ops.utcnow()
    session.add(other)
    session.flush()
    enrollment_ops.expire_provisional_holds(session)
    waiting, _, _, _ = provisional_booking(session, frequency="monthly")
    payment_action.await_payment_action(
        session,
        waiting,
        actor="worker",
        subscription_id="sub_test",
        payment_intent_id="pi_test_3ds",
        action=payment_action.PaymentAction(client_secret="pi_test_3ds_secret_x", url="https://invoice.stripe.com/i/test"),
    )
    from workers.money_events import card_setup_failed_context

    held, holding, _, _ = provisional_booking(session, frequency="monthly")  # a family whose hold waits for a card
    queue_email(
        session,
        template="card_setup_failed",
        recipient=holding.email,
        dedupe_key="card_setup_failed:test",
        context=card_setup_failed_context(session, holding, {"message": "Your card was declined."}),
    )
    ending, _, _, _ = provisional_booking(session, frequency="monthly")  # cancelled at the end of its paid period
    enrollment_ops.activate_enrollment(session, ending, actor="worker", subscription_id="sub_test_ending")
    changes.record_cancel_at_period_end(
        session, ending.id, period_end=enrollment_ops.utcnow() + timedelta(days=30), actor="admin"
    )
    moving, _, _, _ = provisional_booking(session, frequency="monthly")  # moved to a later slot of its teacher
    enrollment_ops.activate_enrollment(session, moving, actor="worker", subscription_id="sub_test_moving")
    slot = session.get(enrollment_ops.Timeslot, moving.timeslot_id)
    later = factories.timeslot(
        session, teacher_row=session.get(enrollment_ops.Teacher, slot.teacher_id), weekday=slot.weekday, start="18:00"
    )
    changes.move_enrollment(session, moving, timeslot_id=later.id, actor="admin")
    waiting_slot = factories.timeslot(session, teacher_row=factories.teacher(session), weekday=3, start="15:30")
    waitlist.add_entry(session, student_id=student.id, instrument="piano", actor="admin")  # Zoë waits for a slot
    # Zoë's teacher is away on her fifth lesson: a substitute teaches it.
    fifth = enrollment_ops.lesson_dates(session, enrollment)[4]
    substitutes.add_time_off(
        session,
        teacher=booked_slot.teacher_id,
        starts_on=fifth,
        ends_on=fifth,
        substitute=factories.teacher(session).id,
        actor="admin",
    )
    offers.offer_slot(session, waiting_slot.id, actor="worker")
    # Zoë's fourth lesson called off: the family holding a piano credit hears of the free date.
    attendance.grant_makeup(session, student_id=held.student_id, reason="recital", instrument="piano", actor="admin")
    fourth = enrollment_ops.lesson_dates(session, enrollment)[3]
    attendance.mark_attendance(session, enrollment_id=enrollment.id, lesson_date=fourth, status="excused", actor="admin")
    assert fourth.isoformat() in makeup_news.announce_makeup_slots(session)[holding.id]
    session.commit()
    rows = {}
    for row in session.exec(select(EmailLog).order_by(EmailLog.id)).all():
        rows.setdefault(row.template, row)
    return rows


def test_every_template_renders_text_and_html_with_real_data(session):
    from workers.emails import render_email

    rows = _real_emails(session)
    assert set(rows) == set(TEMPLATES)
    assert sum(row.context.get("student_name", "").startswith("Zoë") for row in rows.values()) >= 5
    for template, row in rows.items():
        rendered = render_email(template, row.context)
        assert rendered.subject and "\n" not in rendered.subject
        assert "Test Studio" in rendered.subject + rendered.text
        assert "<html" in rendered.html and "Test Studio" in rendered.html
        assert "<script>" not in rendered.html, template  # autoescaped
        if template != "admin_alert" and template not in ("make_up_invite",):
            assert "America/New_York" in rendered.text, template  # local times carry their zone
        if row.context.get("student_name", "").startswith("Zoë"):
            assert "Zoë <script>alert(1)</script> & Co" in rendered.text  # text is not escaped
            assert "Zoë &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in rendered.html
    confirmation = render_email("booking_confirmation", rows["booking_confirmation"].context)
    assert "piano" in confirmation.text and rows["booking_confirmation"].context["time"] in confirmation.text
    context = rows["booking_confirmation"].context
    assert f"every {context['weekday']} at {context['time']}" in confirmation.text  # not "Mons at"
    assert "\nSee you at the studio!\n" in confirmation.text  # its own line after the plan
    assert context["weekday"] in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    final = render_email("payment_failed", rows["payment_failed"].context | {"final_notice": True})
    assert "cancelled" in final.subject


def test_a_missing_value_is_an_error_not_a_blank():
    from workers.emails import RenderError, render_email

    with pytest.raises(RenderError, match="student_name"):
        render_email("booking_confirmation", {"payee_name": "Ann"})


def _admin_alert(session, key="alert:1") -> int:
    [row] = queue_admin_alert(session, subject="Disk <full>", message="the disk is full", dedupe_key=key)
    session.commit()
    return row.id


def test_file_backend_writes_one_eml_per_email_and_never_sends_twice(session, tmp_path):
    from workers.mailer import deliver

    email_id = _admin_alert(session)
    assert deliver(email_id) == "sent"
    assert deliver(email_id) == "skipped"  # a retried or duplicated task
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes())
    assert message["To"] == "admin@studio.test" and "Disk <full>" in message["Subject"]
    row = session.get(EmailLog, email_id)
    session.refresh(row)
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 1, f"file:{files[0].name}")


def test_mailjet_success_records_the_provider_id_and_custom_id(session, mailjet):
    from workers.mailer import deliver

    email_id = _admin_alert(session)
    assert deliver(email_id) == "sent"
    assert deliver(email_id) == "skipped"
    assert mailjet.sent_custom_ids() == [f"email-{email_id}"]
    request = mailjet.requests[0]
    assert request["headers"]["Authorization"].startswith("Basic ")
    message = request["body"]["Messages"][0]
    assert message["To"] == [{"Email": "admin@studio.test"}] and "<p>" in message["HTMLPart"] and message["TextPart"]
    row = session.get(EmailLog, email_id)
    session.refresh(row)
    assert row.status == "sent" and len(row.provider_message_id) == 36


def test_mailjet_500_then_success_retries_and_sends_once(session, mailjet):
    from workers.mailer import TransientEmailError, deliver

    mailjet.script = [500]
    email_id = _admin_alert(session)
    with pytest.raises(TransientEmailError):
        deliver(email_id)
    row = session.get(EmailLog, email_id)
    session.refresh(row)
    assert (row.status, row.attempts) == ("queued", 1) and "500" in row.error
    assert deliver(email_id) == "sent"
    assert deliver(email_id) == "skipped"
    session.refresh(row)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert mailjet.sent_custom_ids() == [f"email-{email_id}"] * 2  # the same CustomID on both attempts


@pytest.mark.parametrize("answer", [400, 403, "error"])
def test_mailjet_refusal_is_terminal_with_a_dead_letter_and_an_admin_alert(session, mailjet, answer, task_queue):
    from workers.mailer import deliver

    mailjet.script = [answer]
    row = queue_email(
        session,
        template="admin_alert",
        recipient="parent@family.test",
        context={"alert_subject": "x", "message": "y"},
        dedupe_key="to-parent",
    )
    # a parent-facing template, so the admin hears about it
    row.template = "make_up_invite"
    row.context = {"payee_name": "Ann", "student_name": "Bo", "reason": "excused", "expires_on": "2026-06-01"}
    session.add(row)
    session.commit()
    assert deliver(row.id) == "failed"
    assert deliver(row.id) == "skipped"
    session.refresh(row)
    assert row.status == "failed" and row.attempts == 1
    [letter] = session.exec(select(DeadLetter)).all()
    assert letter.kind == "send_email" and letter.payload == {"email_id": row.id}
    alert = session.exec(
        select(EmailLog).where(EmailLog.template == "admin_alert", EmailLog.recipient == "admin@studio.test")
    ).one()
    assert f"Email {row.id}" in alert.context["alert_subject"]
    assert len(mailjet.requests) == 1


def test_the_last_failed_retry_gives_up_through_the_error_signal(session, mailjet, task_queue):
    """Huey's SIGNAL_ERROR fires on every attempt; only `retries == 0` records the failure."""
    from workers.tasks import send_email

    mailjet.script = [503, 503]
    email_id = _admin_alert(session)
    task = send_email.s(email_id)
    task.retries = 1
    task_queue.huey.execute(task)  # first attempt: not final, requeued for later
    row = session.get(EmailLog, email_id)
    session.refresh(row)
    assert row.status == "queued" and session.exec(select(DeadLetter)).all() == []
    assert task.retries == 0 and task.eta is not None  # Huey scheduled the retry
    task.eta = None  # ...and we run it now instead of waiting for the retry delay
    task_queue.huey.execute(task)  # the last attempt
    session.refresh(row)
    assert row.status == "failed" and row.attempts == 2
    [letter] = session.exec(select(DeadLetter)).all()
    assert letter.kind == "send_email" and "503" in letter.error


def test_mailjet_429_is_retried_by_huey_and_the_email_goes_out_once(session, mailjet, task_queue):
    """A rate limit is transient: the task is rescheduled with its CustomID, then sent exactly once."""
    from workers.tasks import send_email

    mailjet.script = [429]
    email_id = _admin_alert(session)
    task_queue.clear()  # run the send ourselves, attempt by attempt
    task = send_email.s(email_id)
    task.retries = 2
    task_queue.huey.execute(task)
    row = session.get(EmailLog, email_id)
    session.refresh(row)
    assert (row.status, row.attempts) == ("queued", 1) and "rate limit" in row.error
    assert task.retries == 1 and task.eta is not None  # Huey will try again later
    task.eta = None
    task_queue.huey.execute(task)
    task_queue.huey.execute(send_email.s(email_id))  # a duplicated task finds it sent
    session.refresh(row)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert mailjet.sent_custom_ids() == [f"email-{email_id}"] * 2
    assert session.exec(select(DeadLetter)).all() == []


def test_mailjet_timeout_is_retried_and_the_email_is_sent_once(session, mailjet, monkeypatch):
    """Mailjet got the first request but answered after our timeout: the retry looks the message
    up by its CustomID, finds it, and marks the row sent with Mailjet's id — no second send
    (Mailjet does not drop a duplicate by the client's Idempotency-Key)."""
    from workers.mailer import AmbiguousEmailError, deliver

    monkeypatch.setenv("MAILJET_TIMEOUT_SECONDS", "0.3")
    reset_settings()  # settings are read once; re-read after changing the environment
    mailjet.script = ["delay:0.8"]
    email_id = _admin_alert(session)
    with pytest.raises(AmbiguousEmailError, match="Mailjet unavailable"):
        deliver(email_id)
    row = session.get(EmailLog, email_id)
    session.refresh(row)
    assert (row.status, row.attempts, row.provider_message_id) == ("queued", 1, None)
    assert row.error.startswith("ambiguous: ")  # the row says the attempt is in doubt
    assert deliver(email_id) == "sent"
    assert deliver(email_id) == "skipped"
    session.refresh(row)
    [accepted] = mailjet.messages
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert row.provider_message_id == str(accepted["ID"])  # Mailjet's message id, from the lookup
    assert mailjet.sent_custom_ids() == [f"email-{email_id}"]  # one send request
    assert mailjet.lookup_custom_ids() == [f"email-{email_id}"]  # one lookup, by the attempt after it
    assert mailjet.deliveries() == {f"email-{email_id}": 1}
