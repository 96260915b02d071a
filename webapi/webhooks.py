"""`POST /webhooks/stripe`: verify, store once, process later.

The signature is checked over the raw body with `STRIPE_WEBHOOK_SECRET` (bad or missing:
400 and nothing stored). Bodies up to 1 MiB are taken (413 above); JSON nested deeper than
64 levels is a 400 before anything parses it (`webapi.request_limits`). The event is stored
once by its Stripe id; a replay answers 200 and does nothing more. Processing happens in
`process_stripe_event`, enqueued after the commit, so Stripe gets its 2xx fast and a failure
to process is retried by us, not by it.
"""

from __future__ import annotations

import json

from flask import Blueprint, request

from models.billing import record_stripe_event
from models.config import get_settings
from models.db import after_commit, session_scope
from webapi.problems import problem
from webapi.request_limits import WEBHOOK_MAX_BYTES, refuse_deep_json

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.before_request
def _body_limits():
    # Stripe's events outgrow the API's 64 KiB; nesting stays bounded (a parser that recurses).
    request.max_content_length = WEBHOOK_MAX_BYTES
    return refuse_deep_json(always=True)


@bp.post("/stripe")
def stripe_webhook():
    """Receive one Stripe event."""
    from workers.stripe_gateway import WebhookSignatureError, verify_webhook

    secret = get_settings().STRIPE_WEBHOOK_SECRET
    if not secret:
        return problem(503, "webhooks-unavailable", "Webhooks unavailable", "STRIPE_WEBHOOK_SECRET is not configured")
    payload = request.get_data()  # the raw bytes: the signature covers exactly these
    signature = request.headers.get("Stripe-Signature", "")
    try:
        verify_webhook(payload, signature, secret)
        event = json.loads(payload)
        event_id, event_type = event["id"], event["type"]
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise ValueError("id and type must be strings")
    except WebhookSignatureError:
        return problem(400, "bad-signature", "Bad signature", "the Stripe-Signature header does not verify")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return problem(400, "bad-payload", "Bad payload", "the body is not a Stripe event")

    from workers.tasks import process_stripe_event

    with session_scope() as session:
        stored = record_stripe_event(session, event_id=event_id, type=event_type[:80], payload=event)
        if stored is not None:
            local_id = stored.id
            after_commit(session, lambda: process_stripe_event(local_id))
    if stored is None:
        return {"received": True, "duplicate": True}, 200
    return {"received": True, "duplicate": False}, 200
