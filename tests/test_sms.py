"""Text messages (issue 14, Reminders): SmsLog rows sent exactly once through Twilio's Messages
API (the local stand-in, tests/support/twilio_server.py) whatever the 5xx, 429 and timeouts;
a 4xx is a dead letter and an admin alert; the file backend is the default. Both engines."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from models.config import reset_settings
from models.db import session_scope
from models.outbox import DeadLetter, EmailLog
from models.sms import SmsLog, get_sms, normalize_phone, queue_sms
from tests.support.twilio_server import TwilioStub
from workers.sms_gateway import AmbiguousSmsError, TransientSmsError, deliver
from workers.tasks import replay_dead_letter

PHONE = "+12125550123"
CONTEXT = {
    "payee_name": "Pat",
    "student_name": "Ada",
    "teacher_name": "Clara",
    "instrument": "piano",
    "kind": "lesson",
    "weekday": "Mon",
    "lesson_date": "2026-10-19",
    "time": "16:00",
    "zone": "EDT",
    "timezone": "America/New_York",
    "starts_at": "2026-10-19T16:00:00-04:00",
}


@pytest.fixture
def twilio(monkeypatch):
    stub = TwilioStub().start()
    monkeypatch.setenv("SMS_BACKEND", "twilio")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", stub.account_sid)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", stub.auth_token)
    monkeypatch.setenv("TWILIO_FROM", "+15005550006")
    monkeypatch.setenv("TWILIO_API_BASE", stub.url)
    monkeypatch.setenv("TWILIO_TIMEOUT_SECONDS", "0.5")
    reset_settings()
    yield stub
    stub.stop()


def _queued(key: str = "test:1", phone: str = PHONE) -> int:
    with session_scope() as session:
        sms = queue_sms(session, template="lesson_reminder", recipient=phone, context=CONTEXT, dedupe_key=key)
        assert sms is not None and sms.id is not None
        return sms.id


def _row(sms_id: int) -> SmsLog:
    with session_scope(write=False) as session:
        row = get_sms(session, sms_id)
        session.expunge(row)
        return row


def _deliver_until_done(sms_id: int, attempts: int = 10) -> list[str]:
    """Run the send task's body as Huey would retry it; the outcomes, errors by class name."""
    outcomes = []
    for _ in range(attempts):
        try:
            outcomes.append(deliver(sms_id))
        except AmbiguousSmsError:
            outcomes.append("ambiguous")
            continue
        except TransientSmsError:
            outcomes.append("transient")
            continue
        break
    return outcomes


def test_a_text_is_sent_through_twilio(db, twilio):
    sms_id = _queued()
    assert _deliver_until_done(sms_id) == ["sent"]
    row = _row(sms_id)
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.provider_sid == twilio.messages[0]["sid"] and row.provider_status == "queued"
    assert twilio.requests[0]["To"] == PHONE and twilio.requests[0]["From"] == "+15005550006"
    assert twilio.requests[0]["Body"] == row.body and "Mon 2026-10-19 at 16:00 EDT" in row.body
    assert deliver(sms_id) == "skipped" and twilio.deliveries(PHONE) == 1  # a duplicate task sends nothing


@pytest.mark.parametrize(
    "failures",
    [
        ["accept-then-500"],  # Twilio took it, answered 500
        ["accept-then-503", "accept-then-502"],
        ["slow:1.5"],  # took it, answered after our timeout
        ["500", "503"],  # refused before taking it: the lookups find nothing, then it is sent
        ["429", "slow:1.5"],
        ["slow:1.5", "429"],  # a 429 after a timeout proves nothing: the lookup decides
    ],
)
def test_each_message_is_delivered_once_whatever_the_5xx_and_timeouts(db, twilio, failures):
    sms_id = _queued()
    twilio.script.extend(failures)
    outcomes = _deliver_until_done(sms_id)
    assert outcomes[-1] == "sent"
    assert twilio.deliveries(PHONE) == 1
    row = _row(sms_id)
    assert row.status == "sent" and row.provider_sid == twilio.messages[0]["sid"]
    taken = [i for i, step in enumerate(failures) if step.startswith(("accept-then-", "slow:"))]
    assert len(twilio.requests) == (taken[0] + 1 if taken else len(failures) + 1)  # never resent once Twilio had it
    assert len(twilio.lookups) == len(outcomes) - 1  # every attempt after the first looked first


def test_a_lookup_that_cannot_answer_is_retried_never_a_blind_resend(db, twilio):
    sms_id = _queued()
    twilio.script.append("accept-then-500")
    twilio.lookup_script.extend(["503", "429"])
    assert _deliver_until_done(sms_id) == ["ambiguous", "transient", "transient", "sent"]
    assert twilio.deliveries(PHONE) == 1 and len(twilio.requests) == 1


def test_two_texts_to_one_number_are_told_apart(db, twilio):
    first, second = _queued("test:a"), None
    assert deliver(first) == "sent"
    with session_scope() as session:
        other = queue_sms(
            session,
            template="lesson_reminder",
            recipient=PHONE,
            context=CONTEXT | {"lesson_date": "2026-10-26"},
            dedupe_key="test:b",
        )
        second = other.id
    twilio.script.append("500")  # refused: the lookup must not take the first text for this one
    assert _deliver_until_done(second) == ["ambiguous", "sent"]
    assert twilio.deliveries(PHONE) == 2 and _row(first).provider_sid != _row(second).provider_sid


@pytest.mark.parametrize("status", ["400", "401", "404"])
def test_a_4xx_is_a_dead_letter_and_an_admin_alert(db, twilio, status):
    sms_id = _queued()
    twilio.script.append(status)
    assert _deliver_until_done(sms_id) == ["failed"]
    row = _row(sms_id)
    assert row.status == "failed" and f"answered {status}" in row.error
    with session_scope(write=False) as session:
        letter = session.exec(select(DeadLetter).where(col(DeadLetter.kind) == "send_sms")).one()
        assert letter.payload == {"sms_id": sms_id}
        alert = session.exec(select(EmailLog).where(col(EmailLog.dedupe_key) == f"sms_failed:{sms_id}:admin@studio.test")).one()
        assert alert.template == "admin_alert" and str(sms_id) in alert.context["alert_subject"]
    assert twilio.deliveries(PHONE) == 0
    # The admin fixes the number and replays the dead letter: queued again, sent once.
    assert replay_dead_letter(kind="send_sms", payload=letter.payload) == f"SMS {sms_id} queued again"
    assert deliver(sms_id) == "sent" and twilio.deliveries(PHONE) == 1


def test_twilio_refusing_an_invalid_number_is_terminal(db, twilio):
    sms_id = _queued(phone="+1555")
    assert _deliver_until_done(sms_id) == ["failed"]
    assert "21211" in _row(sms_id).error


def test_the_file_backend_is_the_default(db, tmp_path):
    from models.config import get_settings

    assert get_settings().sms_backend == "file"
    sms_id = _queued()
    assert deliver(sms_id) == "sent"
    files = list((tmp_path / "outbox" / "sms").glob("*.txt"))
    assert len(files) == 1 and files[0].read_text().startswith(f"To: {PHONE}\n")
    assert _row(sms_id).provider_sid == f"file:{files[0].name}"


def test_phone_numbers_are_stored_in_e164():
    assert normalize_phone("(212) 555-0123") == PHONE
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"
    from models.errors import Invalid

    for bad in ("", "hello", "12", "+1 212 555"):
        with pytest.raises(Invalid):
            normalize_phone(bad)


def test_the_cli_sets_reminders_lists_texts_and_retries_a_failed_one(db, session):
    from tests import factories
    from tests.support.cli import ok, ok_json, refused

    payee = factories.payee(session)
    session.commit()
    refused("payees", "set-reminders", payee.email, "--sms", message="need a phone number")
    refused("payees", "set-reminders", payee.email, "--sms", "--phone", "12", message="not a")
    view = ok_json("payees", "set-reminders", payee.email, "--sms", "--no-email", "--phone", "(212) 555-0123")
    assert (view["email"], view["sms"], view["phone"]) == (False, True, PHONE)
    sms_id = _queued()
    with session_scope() as work:
        row = get_sms(work, sms_id)
        row.status, row.error = "failed", "Twilio send answered 400 (code 21610)"
        work.add(row)
    listed = ok_json("sms", "list", "--status", "failed")
    assert [(item["id"], item["recipient"], item["status"]) for item in listed] == [(sms_id, PHONE, "failed")]
    assert "queued again" in ok("sms", "retry", str(sms_id)).stdout
    assert _row(sms_id).status == "queued"
    assert deliver(sms_id) == "sent"
    refused("sms", "retry", str(sms_id), message="was sent")
