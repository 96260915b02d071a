"""Request ids, one log line per request, the API's metrics, and `GET /metrics`.

- Every request runs in a log context with its `request_id`: the client's `X-Request-ID` when
  sane (≤ 64 of A-Z a-z 0-9 . _ -), else a new one. It is answered in `X-Request-ID` and in
  problem+json bodies (`request_id`), and tasks enqueued by the request carry it to the worker.
- `http.request` is logged once per answer: method, route (the URL rule), path, status, duration.
- `studio_http_requests_total` / `studio_http_request_duration_seconds` by route (the URL rule,
  never the raw path) and status; `studio_bookings_total` by outcome for POST /parent/bookings.
- `/metrics` (not in the OpenAPI document, no rate limit) answers only a loopback client whose
  request no proxy forwarded, or `Authorization: Bearer <METRICS_TOKEN>`; 403 problem+json
  otherwise. The peer is the socket's (`REMOTE_ADDR` before any proxy-fix rewrote it).
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request

from models import logs
from workers import metrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
BOOKING_ROUTE = ("POST", "/parent/bookings")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _booking_outcome(response: Response) -> str:
    """accepted, replayed, rate_limited, or the problem type (`slot-taken` → `slot_taken`)."""
    if response.status_code < 300:
        return "replayed" if response.headers.get("Idempotent-Replayed") else "accepted"
    if response.status_code == 429:
        return "rate_limited"
    return (g.get("problem_type") or str(response.status_code)).replace("-", "_")


def _socket_peer() -> str | None:
    """The address of the socket's peer, even when a proxy fix rewrote REMOTE_ADDR from X-Forwarded-For."""
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR")


def metrics_view() -> Response:
    """Prometheus' text exposition of the API (every gunicorn worker) and the studio's state."""
    from webapi.problems import problem
    from workers.app import huey

    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    forwarded = any(
        name in environ for environ in (request.environ, original) for name in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED")
    )
    token = current_app.config["STUDIO_SETTINGS"].METRICS_TOKEN
    if not metrics.may_scrape(
        remote_addr=_socket_peer(), authorization=request.headers.get("Authorization"), forwarded=forwarded, token=token
    ):
        return problem(403, "forbidden", "Forbidden", metrics.FORBIDDEN["detail"])
    body, content_type = metrics.render(huey)
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def install(app: Flask) -> None:
    """Add the request context, the request line and the metrics to `app`, and `GET /metrics`.
    Call before any other `before_request` (the rate limiter's, the body checks'), so that a
    request they refuse still has its id."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        g.request_id = logs.request_id(request.headers.get(REQUEST_ID_HEADER))
        g.log_token = logs.bind(request_id=g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or logs.request_id(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        method = request.method if request.method in METHODS else "OTHER"
        metrics.HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(route, method).observe(seconds)
        if (method, route) == BOOKING_ROUTE:
            metrics.BOOKINGS.labels(_booking_outcome(response)).inc()
        if route != "/metrics":
            logs.event(
                log,
                "http.request",
                method=method,
                route=route,
                path=request.path,
                status=response.status_code,
                duration_ms=round(seconds * 1000, 1),
            )
        return response

    @app.teardown_request
    def _end(_error=None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            try:
                logs.reset(token)
            except ValueError:  # torn down in another context than it began (a streamed answer)
                pass

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
