"""What every step of the booking pipeline shares: the `Booking` it reads once, the idempotency
keys of its Stripe writes, the preload of a unit of work's related rows, and `step` (each
step's log line and metrics). The pipeline itself is `workers/pipeline.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from models import logs
from models.billing import Plan
from models.enrollment import PROVISIONAL
from workers import metrics

# The pipeline's lines keep its logger's name (`workers.pipeline: booking.step ...`).
log = logging.getLogger("workers.pipeline")
ACTOR = "worker"


@dataclass
class Booking:
    """What the pipeline needs to know, read once at the start (plain values, no session)."""

    enrollment_id: int
    payee_id: int
    payee_email: str
    payee_name: str
    customer_id: str | None
    plan_id: int
    frequency: str
    amount_cents: int
    currency: str
    price_id: str | None
    lessons_left: int
    key: str
    payee_key: str
    first_attempt: bool = False  # no earlier run ever reached Stripe for this enrollment
    discount_percent: int = 0  # the sibling discount it is billed with (models.sibling_discount)
    status: str = PROVISIONAL
    subscription_id: str | None = None
    payment_intent_id: str | None = None
    invoice_id: str | None = None


def stable_key(kind: str, row_id: int, created_at) -> str:
    """The idempotency-key prefix of a row: `booking-12-20260101120000123456` (same on every retry)."""
    return f"{kind}-{row_id}-{created_at.strftime('%Y%m%d%H%M%S%f')}"


def payee_key(payee) -> str:
    """The key prefix of a payee's Stripe customer: a new one once a customer was deleted
    (`-c1`...), since Stripe replays the deleted customer for the old key."""
    key = stable_key("payee", payee.id, payee.created_at)
    return f"{key}-c{payee.stripe_customer_generation}" if payee.stripe_customer_generation else key


PRELOADED = "preloaded_rows"


def preload(session, enrollment, *, with_slot: bool) -> None:
    """Load the enrollment's student, payee and plan (and slot, teacher, instrument) in one
    query, for the domain functions of this unit of work to find without SQL.

    They read related rows with `session.get()`, which answers from the session's identity
    map; the map holds rows weakly, so the rows are also kept in `session.info` for the unit
    of work's life (`tests/test_pipeline_queries.py` counts the statements this saves).
    Nothing is locked or changed; a missing row is simply not preloaded, and the domain
    functions load (and fail) as they would have.
    """
    from sqlmodel import select

    from models.enrollment import Enrollment
    from models.people import Instrument, Payee, Student, Teacher
    from models.scheduling import Timeslot

    joins: list[tuple[Any, Any]] = [(Student, Student.id == Enrollment.student_id), (Payee, Payee.id == Student.payee_id)]
    if enrollment.plan_id is not None:
        joins.append((Plan, Plan.id == Enrollment.plan_id))
    if with_slot:
        joins += [
            (Timeslot, Timeslot.id == Enrollment.timeslot_id),
            (Teacher, Teacher.id == Timeslot.teacher_id),
            (Instrument, Instrument.id == Enrollment.instrument_id),
        ]
    statement: Any = select(*(model for model, _ in joins)).select_from(Enrollment)
    for model, condition in joins:
        statement = statement.join(model, condition)
    rows = session.exec(statement.where(Enrollment.id == enrollment.id)).first()
    session.info.setdefault(PRELOADED, []).append(tuple(rows or ()))


@contextmanager
def step(name: str, enrollment_id: int) -> Iterator[None]:
    """One step of a booking: the lines logged inside carry `enrollment_id`, and the step logs one
    `booking.step` event (step, outcome, duration) and is measured, failed or not."""
    started = time.perf_counter()
    with logs.context(enrollment_id=enrollment_id):
        try:
            yield
        except Exception as error:
            seconds = time.perf_counter() - started
            metrics.PIPELINE_STEP_DURATION.labels(name).observe(seconds)
            metrics.PIPELINE_STEP_FAILURES.labels(name, type(error).__name__).inc()
            logs.event(
                log,
                "booking.step",
                level=logging.WARNING,
                step=name,
                outcome="failed",
                error=type(error).__name__,
                duration_ms=round(seconds * 1000, 1),
            )
            raise
        seconds = time.perf_counter() - started
        metrics.PIPELINE_STEP_DURATION.labels(name).observe(seconds)
        logs.event(log, "booking.step", step=name, outcome="ok", duration_ms=round(seconds * 1000, 1))
