"""Fault: a Mailjet storm (500, 502, 503, 429 for a while), then recovery.

30 emails are queued (dispatched after commit into Redis) while the local Mailjet answers
the first 75 requests with errors; a real consumer sends them with Huey's retries.

Must hold: every email ends `sent`, accepted by Mailjet exactly once (CustomIDs counted at
the server); every attempt is logged on its row (attempts add up to the requests Mailjet
saw); no dead letter, no failure alert; the stuck-email job afterwards finds nothing to resend.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from sqlmodel import select

from models.config import reset_settings
from models.db import session_scope
from models.outbox import DeadLetter, EmailLog, queue_admin_alert
from tests.faults.conftest import accepted_custom_ids, mailjet_env, producer_retry_policy, read, storm
from tests.support.consumer import consumer_env, redis_queue, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

EMAILS = 30
FAILURES = 75


def _emails() -> list[EmailLog]:
    return read(lambda s: list(s.exec(select(EmailLog).order_by(EmailLog.id)).all()))


def test_a_mailjet_storm_then_recovery_sends_every_email_exactly_once(
    engine_name, committed_db, private_redis, mailjet_stub, task_queue, consumers, tmp_path, monkeypatch
):
    from workers.periodic import run_job

    producer_retry_policy(monkeypatch, retries=12, delay=0.2, backoff=1.3)
    monkeypatch.setenv("EMAIL_STUCK_SECONDS", "0")
    reset_settings()  # settings are read once; re-read after changing the environment
    answers = [500, 502, 503, 429] * (FAILURES // 4) + [500] * (FAILURES % 4)
    random.Random(5).shuffle(answers)
    storm(mailjet_stub, answers)
    env = consumer_env(
        db_url=committed_db,
        redis_url=private_redis.url,
        stripe_base="http://127.0.0.1:9",
        tmp_path=tmp_path,
        **mailjet_env(mailjet_stub),
    )
    with redis_queue(task_queue, env):
        consumers(env)
        with session_scope() as session:
            for n in range(EMAILS):
                queue_admin_alert(session, subject=f"Storm notice {n}", message="the roof leaks", dedupe_key=f"storm:{n}")
        wait_for(lambda: {row.status for row in _emails()} == {"sent"}, timeout=90, what="every email sent")
        assert run_job("retry_stuck_emails") == {"requeued": []}

    emails = _emails()
    assert len(emails) == EMAILS
    assert len(mailjet_stub.requests) == FAILURES + EMAILS  # the storm was met, then one success each
    accepted = Counter(accepted_custom_ids(mailjet_stub, FAILURES))
    assert accepted == Counter({f"email-{row.id}": 1 for row in emails})
    assert sum(row.attempts for row in emails) == FAILURES + EMAILS  # every attempt logged
    assert max(row.attempts for row in emails) > 1
    assert all(row.provider_message_id for row in emails)
    assert read(lambda s: list(s.exec(select(DeadLetter)).all())) == []
