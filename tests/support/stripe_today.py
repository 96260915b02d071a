"""A read-only Stripe stand-in answering with today's object shapes (API `2026-10-28.endive`).

localstripe answers in 2017 shapes; this serves objects as the current API renders them
(field names as in Stripe's published fixtures, `stripe/openapi` `fixtures3.json`):
an invoice's subscription under `parent.subscription_details`, its payments only when asked
(`expand[]=payments`, `payments.data[].payment.payment_intent`), `confirmation_secret` and
`hosted_invoice_url` on invoices, periods on subscription items, `pause_collection`. Handlers
under test re-read objects from it over real HTTP through the gateway. Every request is
recorded with its `Stripe-Version` header and checked by the same contract checker as the
local Stripe server's (`violations`); writes answer 400 (nothing here may change).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tests.support import stripe_contract


def invoice(
    invoice_id: str,
    *,
    subscription: str,
    customer: str,
    payment_intent: str,
    status: str = "open",
    client_secret: str | None = None,
    hosted_invoice_url: str | None = None,
) -> dict:
    """An invoice in today's shape (no `payment_intent`, no `subscription` at the top)."""
    now = int(time.time())
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "status": status,
        "currency": "usd",
        "amount_due": 12000,
        "amount_paid": 12000 if status == "paid" else 0,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": now,
        "livemode": False,
        "metadata": {},
        "hosted_invoice_url": hosted_invoice_url,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription},
        },
        "confirmation_secret": {"client_secret": client_secret, "type": "payment_intent"} if client_secret else None,
        "_payments": {
            "object": "list",
            "has_more": False,
            "url": f"/v1/invoices/{invoice_id}/payments",
            "data": [
                {
                    "id": f"inpay_{invoice_id}",
                    "object": "invoice_payment",
                    "invoice": invoice_id,
                    "is_default": True,
                    "amount_requested": 12000,
                    "amount_paid": None,
                    "currency": "usd",
                    "status": "open",
                    "livemode": False,
                    "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                    "status_transitions": {"canceled_at": None, "paid_at": None},
                    "created": now,
                }
            ],
        },
    }


def payment_intent(
    intent_id: str,
    *,
    customer: str,
    status: str,
    client_secret: str,
    metadata: dict | None = None,
    last_payment_error: dict | None = None,
) -> dict:
    """A PaymentIntent in today's shape (`latest_charge`, no `charges` list)."""
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 12000,
        "currency": "usd",
        "customer": customer,
        "status": status,
        "client_secret": client_secret,
        "metadata": metadata or {},
        "latest_charge": None,
        "last_payment_error": last_payment_error,
        "livemode": False,
        "created": int(time.time()),
        "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {}} if status == "requires_action" else None,
        "payment_method_types": ["card"],
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }


def subscription(
    subscription_id: str, *, customer: str, status: str, pause_collection: dict | None = None, enrollment_id: int | None = None
) -> dict:
    """A subscription in today's shape: the period on its items, none on the subscription."""
    now = int(time.time())
    return {
        "id": subscription_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "pause_collection": pause_collection,
        "cancel_at_period_end": False,
        "livemode": False,
        "created": now,
        "metadata": {"enrollment_id": str(enrollment_id)} if enrollment_id else {},
        "items": {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": f"si_{subscription_id}",
                    "object": "subscription_item",
                    "current_period_start": now,
                    "current_period_end": now + 30 * 86400,
                    "quantity": 1,
                    "subscription": subscription_id,
                    "price": {
                        "id": "price_today",
                        "object": "price",
                        "currency": "usd",
                        "unit_amount": 12000,
                        "recurring": {"interval": "month", "interval_count": 1},
                    },
                }
            ],
        },
    }


class TodayStripe:
    """The server: `objects` maps `/v1/<resource>/<id>` to an object; `requests` records (method, path, version)."""

    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.violations: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                stand_in.requests.append(("GET", parts.path, self.headers.get("Stripe-Version")))
                params, problems = stripe_contract.decode_form(parse_qsl(parts.query))
                problems += stripe_contract.check_request("GET", parts.path, params, dict(self.headers))
                stand_in.violations += [f"GET {parts.path}: {problem}" for problem in problems]
                found = stand_in.objects.get(parts.path)
                if found is None:
                    return self._reply(
                        404,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "code": "resource_missing",
                                "message": f"No such object: {parts.path}",
                            }
                        },
                    )
                expand = parse_qs(parts.query).get("expand[]", []) + parse_qs(parts.query).get("expand[0]", [])
                shown = {key: value for key, value in found.items() if not key.startswith("_")}
                if "payments" in expand and "_payments" in found:
                    shown["payments"] = found["_payments"]
                return self._reply(200, shown)

            def do_POST(self):
                stand_in.requests.append(("POST", self.path, self.headers.get("Stripe-Version")))
                return self._reply(400, {"error": {"type": "invalid_request_error", "message": "read-only stand-in"}})

            do_DELETE = do_POST

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Request-Id", "req_today")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, obj: dict) -> dict:
        resource = {"invoice": "invoices", "payment_intent": "payment_intents", "subscription": "subscriptions"}[obj["object"]]
        self.objects[f"/v1/{resource}/{obj['id']}"] = obj
        return obj

    def __enter__(self) -> TodayStripe:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
