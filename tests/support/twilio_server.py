"""A local stand-in for Twilio's Messages API (2010-04-01), for tests and manual tries.

    python -m tests.support.twilio_server --port 8431

Built from Twilio's documentation of the Message resource:
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From`, `Body`
  (HTTP Basic auth: the account sid and auth token) → 201 with the message as JSON (`sid`
  `SM` + 32 hex, `account_sid`, `to`, `from`, `body`, `status` `queued`, `num_segments`,
  `direction` `outbound-api`, `date_created`/`date_updated` in RFC 2822, `date_sent` null,
  `price`, `error_code`, `error_message`, `uri`, `api_version`...).
- `GET /2010-04-01/Accounts/{AccountSid}/Messages.json?To=...&From=...&PageSize=...` → 200
  `{"messages": [...], "page", "page_size", "first_page_uri", "next_page_uri": null, "uri", ...}`,
  newest first.
- Errors: `{"code", "message", "more_info", "status"}` with the HTTP status (401 code 20003
  without the right credentials; 400 code 21211 for a `To` that is not E.164; 21602 no Body).

Answers to sends are scripted (`script`, one popped per POST; empty: `ok`):
- `ok`; an HTTP status such as 429 (code 20429), 500, 503 or 400 (code 21610): nothing taken;
- `accept-then-<status>` (`accept-then-500`): the message is taken, the answer is an error
  anyway (a failure hiding a message Twilio has);
- `slow:SECONDS`: the message is taken, the answer comes that late (a client with a shorter
  timeout sees an ambiguous timeout).
`lookup_script` scripts GETs the same way (`ok`, an HTTP status). `messages` holds every
message taken; `deliveries(to)` counts them per number: the figure "exactly once" is about.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-zA-Z]+)/Messages\.json$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
CODES = {400: 21610, 401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


class TwilioStub:
    """The stand-in's state and server: `start()`, `url`, `stop()`."""

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "token-test"):
        self.account_sid, self.auth_token = account_sid, auth_token
        self.messages: list[dict] = []
        self.script: list[str] = []
        self.lookup_script: list[str] = []
        self.requests: list[dict] = []
        self.lookups: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def deliveries(self, to: str) -> int:
        return sum(1 for message in self.messages if message["to"] == to)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self, port: int = 0) -> TwilioStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

            def _error(self, status: int, message: str, code: int | None = None) -> None:
                code = code or CODES.get(status, 20000 + status)
                self._answer(
                    status,
                    {
                        "code": code,
                        "message": message,
                        "more_info": f"https://www.twilio.com/docs/errors/{code}",
                        "status": status,
                    },
                )

            def _authorized(self, sid: str) -> bool:
                expected = base64.b64encode(f"{stub.account_sid}:{stub.auth_token}".encode()).decode()
                return sid == stub.account_sid and self.headers.get("Authorization") == f"Basic {expected}"

            def do_POST(self):
                parts = urlsplit(self.path)
                match = PATH.match(parts.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
                stub.requests.append(form)
                if not match:
                    return self._error(404, "The requested resource was not found")
                if not self._authorized(match["sid"]):
                    return self._error(401, "Authenticate")
                with stub.lock:
                    step = stub.script.pop(0) if stub.script else "ok"
                if step.isdigit():
                    return self._error(int(step), f"scripted {step}")
                if not E164.match(form.get("To", "")):
                    return self._error(400, f"The 'To' number {form.get('To')} is not a valid phone number.", 21211)
                if not form.get("Body"):
                    return self._error(400, "Message body is required.", 21602)
                message = stub._take(form)
                if step.startswith("accept-then-"):
                    return self._error(int(step.removeprefix("accept-then-")), "scripted failure after accepting")
                if step.startswith("slow:"):
                    time.sleep(float(step.removeprefix("slow:")))
                self._answer(201, message)

            def do_GET(self):
                parts = urlsplit(self.path)
                match = PATH.match(parts.path)
                if not match:
                    return self._error(404, "The requested resource was not found")
                if not self._authorized(match["sid"]):
                    return self._error(401, "Authenticate")
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                stub.lookups.append(query)
                with stub.lock:
                    step = stub.lookup_script.pop(0) if stub.lookup_script else "ok"
                if step.isdigit():
                    return self._error(int(step), f"scripted {step}")
                size = int(query.get("PageSize", 50))
                rows = [
                    message
                    for message in reversed(stub.messages)
                    if message["to"] == query.get("To", message["to"]) and message["from"] == query.get("From", message["from"])
                ][:size]
                uri = parts.path + ("?" + parts.query if parts.query else "")
                self._answer(
                    200,
                    {
                        "messages": rows,
                        "page": 0,
                        "page_size": size,
                        "first_page_uri": uri,
                        "previous_page_uri": None,
                        "next_page_uri": None,
                        "uri": uri,
                        "end": max(len(rows) - 1, 0),
                        "start": 0,
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _take(self, form: dict) -> dict:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        sid = "SM" + secrets.token_hex(16)
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(max(1, -(-len(form["Body"]) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self.lock:
            self.messages.append(message)
        return message

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8431)
    stub = TwilioStub().start(parser.parse_args().port)
    print(f"Twilio stand-in on {stub.url} (account {stub.account_sid}, token {stub.auth_token})")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
