"""Signing and posting Stripe events to our webhook endpoint, as Stripe does."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time

_counter = itertools.count(1)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(type: str, obj: dict, *, event_id: str | None = None, api_version: str = "2026-10-28.clover") -> dict:
    """A Stripe event wrapping a snapshot of `obj`."""
    return {
        "id": event_id or f"evt_test_{next(_counter)}_{int(time.time() * 1000)}",
        "object": "event",
        "type": type,
        "api_version": api_version,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def post(client, payload: dict, secret: str, *, signature: str | None = None):
    """POST an event with a valid signature (or the given one)."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is None:
        signature = sign(body, secret)
    if signature:
        headers["Stripe-Signature"] = signature
    return client.post("/webhooks/stripe", data=body, headers=headers)
