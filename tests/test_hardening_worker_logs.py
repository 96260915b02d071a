"""Issue 11, item 18: `studioctl worker -v` (debug logging) never writes a Stripe response body,
and so no client secret, to its log; a booking goes its whole way through the production
entry point, on PostgreSQL and Redis, against localstripe."""

from __future__ import annotations

import re
import sys

import pytest
from sqlmodel import Session

from models.db import get_engine
from models.enrollment import Enrollment
from tests.support.booking import add_card, provisional_booking
from tests.support.consumer import Consumer, consumer_env, redis_queue, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

# What a client secret looks like (`pi_..._secret_...`, `seti_..._secret_...`), or its field.
SECRET = re.compile(r"client_secret|_secret_")


def _status(enrollment_id: int) -> str:
    with Session(get_engine()) as session:
        return session.get(Enrollment, enrollment_id).status


def test_item_18_worker_verbose_logs_no_stripe_response_bodies(
    engine_name, committed_db, redis_url, stripe_env, task_queue, tmp_path
):
    with Session(get_engine(), expire_on_commit=False) as session:
        enrollment, payee, _, _ = provisional_booking(session, frequency="semester")
        enrollment_id, payee_id = enrollment.id, payee.id
    add_card(stripe_env.client(), payee_id)
    env = consumer_env(db_url=committed_db, redis_url=redis_url, stripe_base=stripe_env.base_url, tmp_path=tmp_path)
    worker = Consumer(
        env, tmp_path / "worker.log", command=[sys.executable, "-m", "studioctl.main", "worker", "-v", "--no-periodic", "-w", "1"]
    ).start()
    try:
        worker.wait_for_log("The following commands are available", timeout=60)
        with redis_queue(task_queue, env):
            from workers.tasks import book_enrollment

            book_enrollment(enrollment_id)
            wait_for(lambda: _status(enrollment_id) == "active", timeout=60, what="active")
    finally:
        worker.stop()
    log = worker.log()
    assert "DEBUG" in log  # verbose really is on (Huey's and our own debug lines)
    assert "stripe.request" in log and "path=/v1/payment_intents" in log  # the gateway's line per call: they were made
    assert "Stripe API response" not in log  # the SDK's own summaries (URLs with a list's filters) are held back
    assert not SECRET.search(log), SECRET.search(log).group(0) + " in the worker's log"
    assert "body=" not in log and "post_data=" not in log  # no request or response body of Stripe's
    assert "Traceback" not in log


def test_item_18_every_entry_point_holds_the_http_body_loggers_at_info(caplog):
    """The CLI's root group, `create_app` and the consumer module all call `wiring.install()`."""
    import logging

    from stripe._util import log_debug, log_info

    from workers import wiring

    wiring.install()
    with caplog.at_level(logging.DEBUG):  # the root logger at DEBUG, as `-v` sets it
        log_debug("API response body", body='{"client_secret": "seti_1_secret_2"}')
        log_info("Stripe API response", path="/v1/setup_intents", response_code=200)
        logging.getLogger("urllib3.connectionpool").debug("POST /v1/setup_intents HTTP/1.1 200")
        logging.getLogger("urllib3.connectionpool").info("Resetting dropped connection: 127.0.0.1")
    # Stripe's INFO summaries are held back too: the gateway logs each call itself (`stripe.request`).
    assert [record.getMessage() for record in caplog.records] == ["Resetting dropped connection: 127.0.0.1"]
    assert not any(logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in wiring.HTTP_BODY_LOGGERS)
