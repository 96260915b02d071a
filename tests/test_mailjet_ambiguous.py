"""Mailjet's ambiguous answers: exactly one delivery per email.

A send whose answer is lost (late past our timeout, connection dropped, 5xx) may or may not
have reached Mailjet; every attempt after the first looks the message up by its CustomID
(`GET /v3/REST/message?CustomID=email-<id>`) and sends only what Mailjet does not know. The
figure that matters is counted at the stand-in: messages it accepted per CustomID.

Everything runs the real path — `deliver`, the `send_email` Huey task with its retries, a
real consumer killed with -9 — against the local Mailjet (`tests/support/mailjet_server.py`).
"""

from __future__ import annotations

import time

import pytest
from sqlmodel import select

from models.config import reset_settings
from models.db import session_scope
from models.outbox import DeadLetter, EmailLog, queue_admin_alert
from tests.faults.conftest import mailjet_env, producer_retry_policy, read
from tests.support.consumer import consumer_env, redis_queue, wait_for

LATE = "delay:0.8"  # accepted, answered after the client's timeout (0.3 s below)


@pytest.fixture
def short_timeout(monkeypatch):
    """The client gives up after 0.3 s, so a `delay:0.8` answer is a lost answer."""
    monkeypatch.setenv("MAILJET_TIMEOUT_SECONDS", "0.3")
    reset_settings()  # settings are read once; re-read after changing the environment


def _alert(session, key: str) -> int:
    [row] = queue_admin_alert(session, subject=f"Notice {key}", message="the roof leaks", dedupe_key=key)
    session.commit()
    return row.id


def _dispatched_alert(key: str) -> int:
    """Queue an alert in a unit of work of its own: its send task is enqueued after the commit."""
    with session_scope() as unit:
        [row] = queue_admin_alert(unit, subject=f"Notice {key}", message="the roof leaks", dedupe_key=key)
    return row.id


def _row(session, email_id: int) -> EmailLog:
    session.expire_all()
    return session.get(EmailLog, email_id)


def _run_like_a_consumer(huey, *, until, timeout: float = 30.0) -> None:
    """Run the in-process Huey queue as its consumer would: pending tasks, and scheduled retries
    once due, until `until()` holds (Huey's own execute/retry code, nothing patched)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in huey.read_schedule(huey._get_timestamp()):
            huey.enqueue(task)
        task = huey.dequeue()
        if task is not None:
            huey.execute(task)
            continue
        if until():
            return
        time.sleep(0.02)
    raise AssertionError(f"the queue did not settle in {timeout}s")


# The answer arrives after the client's timeout ---------------------------------------------


def test_late_answers_end_in_exactly_one_delivery_per_custom_id(session, mailjet, short_timeout, task_queue, monkeypatch):
    """Every first send is accepted by Mailjet and answered too late: each task's retry looks
    the message up, finds it, and marks the row sent. The old code sent each one twice."""
    emails = 10
    producer_retry_policy(monkeypatch, retries=3, delay=0.2)
    mailjet.script = [LATE] * emails
    ids = [_dispatched_alert(f"late:{n}") for n in range(emails)]
    assert task_queue.names() == ["send_email"] * emails

    _run_like_a_consumer(task_queue.huey, until=lambda: all(_row(session, i).status == "sent" for i in ids))

    deliveries = mailjet.deliveries()
    rows = [_row(session, email_id) for email_id in ids]
    figures = {
        "emails": emails,
        "send requests": len(mailjet.requests),
        "lookups": len(mailjet.lookups),
        "CustomIDs accepted": len(deliveries),
        "max accepted per CustomID": max(deliveries.values()),
        "attempts": sum(row.attempts for row in rows),
    }
    print(f"\nlate answers, through the send_email task: {figures}")
    assert deliveries == {f"email-{email_id}": 1 for email_id in ids}  # exactly once each
    assert len(mailjet.requests) == emails  # one send each: the retry found it instead
    assert sorted(mailjet.lookup_custom_ids()) == sorted(f"email-{email_id}" for email_id in ids)
    by_custom_id = {message["CustomID"]: message for message in mailjet.messages}
    for row in rows:
        assert (row.status, row.attempts, row.error) == ("sent", 2, None)
        assert row.provider_message_id == str(by_custom_id[f"email-{row.id}"]["ID"])  # Mailjet's message id
    assert task_queue.pending() == [] and task_queue.huey.scheduled() == []
    assert session.exec(select(DeadLetter)).all() == []


@pytest.mark.parametrize(
    "first, accepted",
    [
        (LATE, True),  # read timeout, Mailjet has it
        ("accept-then-500", True),  # a 5xx that hides an accepted message
        ("accept-then-drop", True),  # connection dropped after Mailjet took it
        ("drop", False),  # connection dropped before Mailjet took it
        ("stall:0.8", False),  # our timeout fired before the request reached Mailjet
        (503, False),  # a 5xx that really refused it
    ],
)
def test_an_ambiguous_send_is_looked_up_then_sent_only_if_unknown(session, mailjet, short_timeout, first, accepted):
    from workers.mailer import AmbiguousEmailError, deliver

    mailjet.script = [first]
    email_id = _alert(session, "ambiguous")
    with pytest.raises(AmbiguousEmailError):
        deliver(email_id)
    row = _row(session, email_id)
    assert (row.status, row.attempts, row.provider_message_id) == ("queued", 1, None)
    assert row.error.startswith("ambiguous: ")  # recorded on the row: the attempt is in doubt
    assert sum(mailjet.deliveries().values()) == (1 if accepted else 0)

    assert deliver(email_id) == "sent"
    assert deliver(email_id) == "skipped"
    row = _row(session, email_id)
    assert mailjet.deliveries() == {f"email-{email_id}": 1}  # exactly once, either way
    assert mailjet.lookup_custom_ids() == [f"email-{email_id}"]
    assert len(mailjet.requests) == (1 if accepted else 2)  # sent again only when Mailjet did not know it
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    [message] = mailjet.messages
    if accepted:
        assert row.provider_message_id == str(message["ID"])  # found: the lookup's ID
    else:
        assert row.provider_message_id == message["UUID"]  # sent: the send's MessageUUID


# The lookup itself fails -------------------------------------------------------------------


@pytest.mark.parametrize("lookup", [500, 429, "delay:0.8"], ids=["500", "429", "timeout"])
@pytest.mark.parametrize("first, accepted", [(LATE, True), ("drop", False)], ids=["accepted", "never-arrived"])
def test_a_failed_lookup_sends_nothing_and_a_later_attempt_finds_or_sends(
    session, mailjet, short_timeout, lookup, first, accepted
):
    from workers.mailer import AmbiguousEmailError, TransientEmailError, deliver

    mailjet.script = [first]
    mailjet.lookup_script = [lookup]
    email_id = _alert(session, "lookup-fails")
    with pytest.raises(AmbiguousEmailError):
        deliver(email_id)

    with pytest.raises(TransientEmailError, match="lookup") as caught:
        deliver(email_id)  # the lookup cannot answer: no blind send
    assert not isinstance(caught.value, AmbiguousEmailError)
    row = _row(session, email_id)
    assert (row.status, row.attempts, row.provider_message_id) == ("queued", 2, None)
    assert "not resent" in row.error or "rate limited" in row.error
    assert len(mailjet.requests) == 1  # nothing sent by the attempt whose lookup failed

    assert deliver(email_id) == "sent"  # the lookup answers now
    row = _row(session, email_id)
    assert (row.status, row.attempts) == ("sent", 3)
    assert mailjet.deliveries() == {f"email-{email_id}": 1}
    assert len(mailjet.lookups) == 2
    assert len(mailjet.requests) == (1 if accepted else 2)


def test_a_failed_lookup_is_retried_by_huey_like_any_transient_error(session, mailjet, short_timeout, task_queue, monkeypatch):
    """Through the task: late answer, lookup 500, lookup 429, then the lookup finds it."""
    producer_retry_policy(monkeypatch, retries=4, delay=0.1)
    mailjet.script = [LATE]
    mailjet.lookup_script = [500, 429]
    email_id = _dispatched_alert("lookup-retried")
    _run_like_a_consumer(task_queue.huey, until=lambda: _row(session, email_id).status == "sent")
    row = _row(session, email_id)
    assert (row.attempts, len(mailjet.requests), len(mailjet.lookups)) == (4, 1, 3)
    assert mailjet.deliveries() == {f"email-{email_id}": 1}
    assert row.provider_message_id == str(mailjet.messages[0]["ID"])


def test_a_refused_lookup_is_terminal_and_nothing_is_resent(session, mailjet, short_timeout, task_queue):
    """A 401 on the lookup (keys revoked meanwhile) will not heal by retrying: dead letter and
    failed row, as for a refused send; an admin's requeue looks it up again."""
    from workers.mailer import AmbiguousEmailError, deliver

    mailjet.script = [LATE]
    mailjet.lookup_script = [401]
    row = queue_admin_alert(session, subject="x", message="y", dedupe_key="refused-lookup")[0]
    session.commit()
    with pytest.raises(AmbiguousEmailError):
        deliver(row.id)
    assert deliver(row.id) == "failed"
    row = _row(session, row.id)
    assert row.status == "failed" and "lookup (401)" in row.error
    [letter] = session.exec(select(DeadLetter)).all()
    assert letter.payload == {"email_id": row.id}
    assert len(mailjet.requests) == 1 and mailjet.deliveries() == {f"email-{row.id}": 1}


# Not ambiguous ----------------------------------------------------------------------------


def test_a_connection_never_made_or_a_429_is_not_ambiguous_but_the_retry_still_looks_first(session, mailjet, monkeypatch):
    """Refused connections and 429s prove nothing was sent; the retry looks up anyway, because an
    earlier ambiguous attempt (or a dead worker) may sit behind any later failure."""
    from tests.support.stripe_server import free_port
    from workers.mailer import AmbiguousEmailError, TransientEmailError, deliver

    email_id = _alert(session, "not-ambiguous")
    monkeypatch.setenv("MAILJET_API_URL", f"http://127.0.0.1:{free_port()}/")  # nobody listens
    reset_settings()
    with pytest.raises(TransientEmailError) as caught:
        deliver(email_id)
    assert not isinstance(caught.value, AmbiguousEmailError) and not _row(session, email_id).error.startswith("ambiguous")

    monkeypatch.setenv("MAILJET_API_URL", mailjet.url)
    reset_settings()
    mailjet.script = [429]
    with pytest.raises(TransientEmailError) as caught:
        deliver(email_id)  # attempt 2: looked up (unknown), sent, rate limited
    assert not isinstance(caught.value, AmbiguousEmailError) and "rate limit" in _row(session, email_id).error
    assert deliver(email_id) == "sent"
    assert len(mailjet.lookups) == 2 and len(mailjet.requests) == 2
    assert mailjet.deliveries() == {f"email-{email_id}": 1}


def test_the_first_attempt_never_looks_up(session, mailjet):
    from workers.mailer import deliver

    email_id = _alert(session, "first")
    assert deliver(email_id) == "sent"
    assert mailjet.lookups == [] and mailjet.deliveries() == {f"email-{email_id}": 1}


def test_the_stand_in_checks_basic_auth_on_sends_and_lookups(mailjet):
    import json
    import urllib.error
    import urllib.request

    for method, path, body in (("POST", "v3.1/send", b'{"Messages": []}'), ("GET", "v3/REST/message?CustomID=email-1", None)):
        request = urllib.request.Request(
            mailjet.url + path,
            data=body,
            method=method,
            headers={"Authorization": "Basic bm90OnJpZ2h0", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 401 and json.loads(caught.value.read())["StatusCode"] == 401
    assert mailjet.messages == []


# A consumer killed with -9 in the middle of a send ----------------------------------------


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("held", ["delay:60", "stall:60"], ids=["mailjet-has-it", "never-arrived"])
def test_a_consumer_killed_mid_send_ends_in_exactly_one_delivery(
    held,
    engine_name,
    committed_db,
    redis_url,
    mailjet,
    task_queue,
    consumers,
    tmp_path,
    monkeypatch,  # noqa: F811
):
    """The consumer dies while Mailjet holds its send (`delay:` — the message is in; `stall:` —
    it never got in). The row stays `sending`; after EMAIL_SENDING_STALE_SECONDS
    `retry_stuck_emails` hands it to a new consumer, which looks it up before any resend."""
    from workers.periodic import run_job

    stale = "3"
    monkeypatch.setenv("EMAIL_SENDING_STALE_SECONDS", stale)
    reset_settings()
    producer_retry_policy(monkeypatch, retries=2, delay=0.2)
    env = consumer_env(
        db_url=committed_db,
        redis_url=redis_url,
        stripe_base="http://127.0.0.1:9",
        tmp_path=tmp_path,
        EMAIL_SENDING_STALE_SECONDS=stale,
        **mailjet_env(mailjet),
    )
    mailjet.script = [held]

    def email() -> EmailLog:
        return read(lambda s: s.exec(select(EmailLog)).one())

    with redis_queue(task_queue, env):
        first = consumers(env)
        with session_scope() as session:
            queue_admin_alert(session, subject="Kill notice", message="m", dedupe_key="kill-9")
        wait_for(lambda: len(mailjet.requests) == 1, what="the consumer's send reached the stand-in")
        first.kill_9()
        row = email()
        assert (row.status, row.attempts) == ("sending", 1)  # left behind by the dead worker
        custom_id = f"email-{row.id}"
        assert sum(mailjet.deliveries().values()) == (1 if held.startswith("delay") else 0)

        consumers(env)
        assert run_job("retry_stuck_emails") == {"requeued": []}  # not stale yet: it might be alive
        wait_for(lambda: run_job("retry_stuck_emails")["requeued"] == [row.id], timeout=10, what="the row is stale")
        wait_for(lambda: email().status == "sent", what="the email is sent")

    row = email()
    print(
        f"\nkill -9 mid-send ({held}): send requests {len(mailjet.requests)}, lookups {len(mailjet.lookups)}, "
        f"accepted {dict(mailjet.deliveries())}, attempts {row.attempts}"
    )
    assert mailjet.deliveries() == {custom_id: 1}  # exactly one delivery
    assert mailjet.lookup_custom_ids() == [custom_id]
    assert row.attempts == 2
    if held.startswith("delay"):
        assert len(mailjet.requests) == 1 and row.provider_message_id == str(mailjet.messages[0]["ID"])
    else:
        assert len(mailjet.requests) == 2 and row.provider_message_id == mailjet.messages[0]["UUID"]
    assert read(lambda s: list(s.exec(select(DeadLetter)).all())) == []
