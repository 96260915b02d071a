"""The booking pipeline through a real Huey consumer, against the bare Stripe calls it makes.

A fresh PostgreSQL database, localstripe (`tests.support.stripe_server`, loopback only),
Redis with a queue of the bench's own, and `studioctl worker --no-periodic` (4 threads).
N families have a card on file (payment setup + SetupIntent confirmed, as the browser
does) and a provisional hold each; the plan's Stripe price exists already. Then all N
`book_enrollment` tasks are enqueued at once and the clock runs until every enrollment is
active (the consumer also sends each booking confirmation, to files).

The baseline makes the Stripe SDK calls the pipeline makes for one such booking — retrieve
the customer (no default card yet: Stripe's `setup_intent.succeeded` webhook, which would
set it, is not sent by localstripe), list its cards, make the card the default, create the
subscription with an idempotency key — for N other customers with a card attached the same
way, from 4 threads, with nothing else around them. (Until 2026-11-24 it made three calls
— retrieve, list subscriptions, create — for customers whose default was set untimed, while
the pipeline made five for the same booking; `bench/results.md`, "Optimisations".)

- bookings/min through the consumer ÷ bare call sequences/min   (target ≥ 0.7)
- enrollments active, one Stripe subscription each              (N of N)

    python -m bench.pipeline [--bookings 100]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from bench.common import (
    VENV_BIN,
    Figure,
    bench_env,
    bound_figure,
    flush_queue,
    print_figures,
    ratio_figure,
    restore_environ,
    seed_studio,
    sql,
    work_dir,
)
from tests.support import stripe_server
from tests.support.consumer import Consumer
from tests.support.databases import fresh_pg_database

BENCH = "pipeline"
THREADS = 4
STRIPE_KEY = "sk_test_bench"


def _bare_sequences(base_url: str, price_id: str, count: int, *, prefix: str) -> float:
    """Seconds for `count` bare booking call sequences from THREADS threads (setup excluded)."""
    import stripe

    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": base_url}, max_network_retries=0)
    customers = []
    for n in range(count):
        customer = client.v1.customers.create({"email": f"{prefix}{n}@bench.test", "name": f"Bare {n}"})
        client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})  # a card, not yet the default
        customers.append(customer.id)
    queue = list(enumerate(customers))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                n, customer_id = queue.pop()
            try:
                customer = client.v1.customers.retrieve(customer_id)
                if customer.invoice_settings.default_payment_method:
                    failures.append(f"{customer_id} has a default card already")  # not the pipeline's case
                methods = client.v1.payment_methods.list({"customer": customer_id, "type": "card"})
                card = methods.data[-1].id
                client.v1.customers.update(
                    customer_id,
                    {"invoice_settings": {"default_payment_method": card}},
                    {"idempotency_key": f"bare-{prefix}-{n}-default-{card}"},
                )
                subscription = client.v1.subscriptions.create(
                    {
                        "customer": customer_id,
                        "items": [{"price": price_id}],
                        "payment_behavior": "error_if_incomplete",
                        "metadata": {"enrollment_id": f"{prefix}{n}"},
                    },
                    {"idempotency_key": f"bare-{prefix}-{n}-subscription"},
                )
                if subscription.status != "active":
                    failures.append(subscription.status)
            except stripe.StripeError as error:
                failures.append(str(error))

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"bare Stripe sequence failed: {failures[:3]}")
    return elapsed


def _arrange_bookings(studio, count: int) -> list[int]:
    """Cards on file for `count` families, the plan's price, one provisional hold each."""
    import stripe

    from models.booking import hold_slot
    from models.db import session_scope
    from models.people import Payee
    from workers.billing_setup import ensure_plan_price
    from workers.payments import create_payment_setup
    from workers.stripe_gateway import StripeGateway

    settings_base = os.environ["STRIPE_API_BASE"]
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": settings_base}, max_network_retries=0)
    ensure_plan_price(StripeGateway(), studio.plan_id)
    enrollment_ids = []
    for (_, payee_id, student_id), slot_id in zip(studio.payees[:count], studio.slot_ids, strict=False):
        setup = create_payment_setup(payee_id)
        client.v1.setup_intents.confirm(setup["setup_intent_id"], {"payment_method": "pm_card_visa"})
        with session_scope() as session:
            payee = session.get(Payee, payee_id)
            enrollment = hold_slot(
                session,
                payee=payee,
                student_id=student_id,
                timeslot_id=slot_id,
                instrument="piano",
                plan=studio.plan_id,
                actor=f"payee:{payee_id}",
            )
            enrollment_ids.append(enrollment.id)
    return enrollment_ids


def _start_consumer(env: dict[str, str], log_path) -> Consumer:
    """`studioctl worker` as production runs it, started and polling its queue."""
    consumer = Consumer(
        env,
        log_path,
        cwd=work_dir("pipeline"),
        command=[str(VENV_BIN / "studioctl"), "worker", "--no-periodic", "-w", str(THREADS)],
    )
    consumer.start().wait_for_log("queue ")  # its start-up line names the queue
    time.sleep(0.5)  # its worker threads are polling now
    return consumer


def _wait_until_done(url: str, count: int, timeout: float) -> tuple[int, int]:
    """Poll until `count` enrollments left `provisional` (or `timeout`); (active, finished)."""
    deadline = time.monotonic() + timeout
    while True:
        active, finished = sql(
            url,
            "SELECT count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status <> 'provisional') FROM enrollment",
        )[0]
        if finished >= count or time.monotonic() > deadline:
            return active, finished
        time.sleep(0.02)


def run(*, bookings: int = 100, timeout: float = 120.0) -> list[Figure]:
    """Time N bookings through the consumer and N bare call sequences; the figures."""
    from models.config import reset_settings

    folder = work_dir("pipeline")
    stripe_log = folder / "localstripe.log"
    consumer_log = folder / "consumer.log"
    consumer_log.write_text("")
    with fresh_pg_database("bench_pipeline") as url, stripe_server.running(log_path=str(stripe_log)) as stripe_base:
        studio = seed_studio(url, teachers=10, slots_per_teacher=max(24, bookings // 10 + 1), payees=bookings + 1)
        env = bench_env(
            url,
            STRIPE_SECRET_KEY=STRIPE_KEY,
            STRIPE_API_BASE=stripe_base,
            STRIPE_WEBHOOK_SECRET="whsec_bench_0123456789",
            OUTBOX_DIR=str(folder / "outbox"),
        )
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        reset_settings()
        consumer = None
        try:
            warm_up_id, *enrollment_ids = _arrange_bookings(studio, bookings + 1)
            price_id = sql(url, "SELECT stripe_price_id FROM plan WHERE id = %s", (studio.plan_id,))[0][0]
            # localstripe slows down as its store grows: half the baseline runs before the
            # pipeline and half after, so both sides see the same store sizes on average.
            bare_seconds = _bare_sequences(stripe_base, price_id, bookings // 2, prefix="before")

            consumer = _start_consumer(env, consumer_log)
            from huey.storage import RedisStorage

            from workers.tasks import book_enrollment, huey

            # `huey` was built when `workers` was first imported, maybe under another bench's
            # environment: point it at this run's queue explicitly.
            original_storage = huey.storage
            huey.storage = RedisStorage(name=env["HUEY_NAME"], url=env["REDIS_URL"])
            try:
                # One booking first, untimed: the consumer imports Stripe and the templates once.
                book_enrollment(warm_up_id)
                _wait_until_done(url, 1, timeout)
                time.sleep(0.3)  # and its confirmation email is sent
                started = time.perf_counter()
                for enrollment_id in enrollment_ids:
                    book_enrollment(enrollment_id)
            finally:
                huey.storage = original_storage
            active, finished = _wait_until_done(url, bookings + 1, timeout)
            pipeline_seconds = time.perf_counter() - started
            active, finished = active - 1, finished - 1
            bare_seconds += _bare_sequences(stripe_base, price_id, bookings - bookings // 2, prefix="after")
            subscriptions = sql(
                url,
                "SELECT count(DISTINCT stripe_subscription_id) FROM enrollment WHERE status = 'active' AND id <> %s",
                (warm_up_id,),
            )[0][0]
        finally:
            if consumer is not None:
                consumer.stop()
            flush_queue(env)
            restore_environ(saved)
    pipeline_rate = bookings / pipeline_seconds * 60
    bare_rate = bookings / bare_seconds * 60
    return [
        ratio_figure(
            BENCH,
            "bookings/min through the consumer",
            pipeline_rate,
            "/min",
            baseline_name="bare Stripe call sequences",
            baseline=bare_rate,
            at_least=0.7,
            note=f"{bookings} bookings in {pipeline_seconds:.2f} s (studioctl worker, {THREADS} threads); "
            f"bare: {bare_seconds:.2f} s from {THREADS} threads",
        ),
        bound_figure(
            BENCH,
            "enrollments active with their own subscription",
            subscriptions,
            "",
            at_least=bookings,
            note=f"{active} active of {bookings}" + ("" if finished >= bookings else " (timed out)"),
        ),
    ]


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=100)
    args = parser.parse_args()
    print_figures("bench.pipeline", run(bookings=args.bookings))


if __name__ == "__main__":
    main()
