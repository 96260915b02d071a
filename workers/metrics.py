"""Prometheus metrics of the API and the consumer (prometheus-client).

Counters and histograms live here and are moved where things happen: the API's requests and
bookings (`webapi/observability.py`), the booking pipeline's steps, Stripe calls (the gateway's
`_call`), email sends, webhook events, periodic jobs. Under gunicorn `studioctl serve` sets
PROMETHEUS_MULTIPROC_DIR before this module is imported: each worker process writes its values
to files there and a scrape adds them up (`render`).

The state gauges — queue depth, open dead letters, holds, webhook events waiting — are read
when scraped (`StateCollector`, a few short queries), by whichever process answers.

`/metrics` is not public: `may_scrape` lets in a loopback client whose request no proxy
forwarded, or anyone sending `Authorization: Bearer <METRICS_TOKEN>`. The API serves it at
`/metrics`; the consumer on WORKER_METRICS_PORT (`serve`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)
disable_created_metrics()  # no `*_created` series beside every counter
# prometheus_client chose its mode when imported (just above): files in PROMETHEUS_MULTIPROC_DIR or memory.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "studio_http_requests_total", "API requests answered, by route (the URL rule) and status", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "studio_http_request_duration_seconds", "API request latency by route (the URL rule)", ["route", "method"], buckets=FAST
)
BOOKINGS = Counter(
    "studio_bookings_total",
    "POST /parent/bookings answers by outcome: accepted, replayed, slot_taken, too_many_holds, card_required, rate_limited...",
    ["outcome"],
)
PIPELINE_STEP_DURATION = Histogram(
    "studio_pipeline_step_duration_seconds", "Booking pipeline steps by step", ["step"], buckets=FAST
)
PIPELINE_STEP_FAILURES = Counter(
    "studio_pipeline_step_failures_total", "Booking pipeline steps that raised, by step and error class", ["step", "error"]
)
PIPELINE_RESULTS = Counter("studio_pipeline_results_total", "Booking pipeline runs by where they stopped", ["result"])
STRIPE_REQUESTS = Counter(
    "studio_stripe_requests_total",
    "Stripe calls by operation (customer.create...) and outcome: ok, transient, terminal, authentication_required",
    ["operation", "outcome"],
)
STRIPE_DURATION = Histogram(
    "studio_stripe_request_duration_seconds", "Stripe call latency by operation", ["operation"], buckets=FAST
)
EMAILS = Counter(
    "studio_emails_total",
    "Email sends by template and outcome: sent, already_sent, retry, failed, skipped",
    ["template", "outcome"],
)
WEBHOOK_EVENTS = Counter("studio_webhook_events_total", "Stripe events processed, by final status", ["status"])
WEBHOOK_LAG = Histogram(
    "studio_webhook_lag_seconds",
    "Stripe event created (its `created`) to processed here",
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 86400),
)
JOB_RUNS = Counter("studio_job_runs_total", "Periodic job runs by job and outcome (ok, failed)", ["job", "outcome"])


class StateCollector:
    """Gauges read at scrape time: the queue (`queue`, the Huey instance), open dead letters, holds,
    webhook events waiting. `studio_state_up` is 0 when the database could not be read (its
    gauges are then left out)."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def collect(self):
        from models import health
        from models.db import session_scope

        up = GaugeMetricFamily("studio_state_up", "1 when the scrape could read the database's state")
        try:
            with session_scope(write=False) as session:
                state = health.operations_gauges(session)
            up.add_metric([], 1)
        except Exception as error:  # a scrape never fails: the alert reads studio_state_up
            log.warning("metrics: reading the state failed: %s", str(error).splitlines()[0] if str(error) else error)
            state = None
            up.add_metric([], 0)
        yield up
        if state is not None:
            holds = GaugeMetricFamily("studio_holds_open", "Holds (provisional or action_required) by status", labels=["status"])
            for status, count in state["holds_open"].items():
                holds.add_metric([status], count)
            yield holds
            yield GaugeMetricFamily(
                "studio_holds_past_expiry",
                "Holds whose expiry has passed (the expiry job ends them each minute)",
                value=state["holds_past_expiry"],
            )
            yield GaugeMetricFamily("studio_dead_letters_open", "Dead letters nobody resolved", value=state["dead_letters_open"])
            yield GaugeMetricFamily(
                "studio_webhook_events_waiting",
                "Stripe events stored and not processed yet",
                value=state["webhook_events_waiting"],
            )
            yield GaugeMetricFamily(
                "studio_webhook_oldest_waiting_seconds",
                "Age of the oldest Stripe event stored and not processed (0: none)",
                value=state["webhook_oldest_waiting_seconds"],
            )
        try:
            pending, scheduled = self.queue.pending_count(), self.queue.scheduled_count()
        except Exception as error:
            log.warning("metrics: reading the queue failed: %s", error)
            return
        yield GaugeMetricFamily("studio_queue_depth", "Tasks waiting in the queue", value=pending)
        yield GaugeMetricFamily(
            "studio_queue_scheduled", "Tasks scheduled for later (retries waiting their delay)", value=scheduled
        )


def render(queue) -> tuple[bytes, str]:
    """The exposition: this process's metrics (every process's, in multi-process mode), then the
    state gauges, `queue` being the Huey instance."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(StateCollector(queue)), CONTENT_TYPE_LATEST


def may_scrape(*, remote_addr: str | None, authorization: str | None, forwarded: bool, token: str | None) -> bool:
    """Whether a scrape is let in: the bearer token matches, or the socket's peer is loopback and
    no proxy forwarded the request (a proxy on this host would make every client look local)."""
    if token and authorization:
        scheme, _, offered = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
            return True
    if forwarded:
        return False
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


FORBIDDEN = {
    "type": "forbidden",
    "title": "Forbidden",
    "status": 403,
    "detail": "metrics are served to loopback, or with Authorization: Bearer <METRICS_TOKEN>",
}


def wsgi_app(token: str | None, queue):
    """The consumer's metrics endpoint as a WSGI app (`GET /metrics`)."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        allowed = may_scrape(
            remote_addr=environ.get("REMOTE_ADDR"),
            authorization=environ.get("HTTP_AUTHORIZATION"),
            forwarded=bool(environ.get("HTTP_X_FORWARDED_FOR") or environ.get("HTTP_FORWARDED")),
            token=token,
        )
        if not allowed:
            body = json.dumps({**FORBIDDEN, "instance": environ.get("PATH_INFO")}).encode()
            start_response("403 Forbidden", [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))])
            return [body]
        body, content_type = render(queue)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the signature of the base class)
        pass


def serve(host: str, port: int, *, token: str | None, queue) -> WSGIServer:
    """Serve `/metrics` on host:port from a daemon thread (the consumer's WORKER_METRICS_PORT)."""
    server = make_server(host, port, wsgi_app(token, queue), server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", host, server.server_port)
    return server
