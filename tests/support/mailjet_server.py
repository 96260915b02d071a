"""A local stand-in for Mailjet: the v3.1 send API (`POST /v3.1/send`), the v3 message
lookup (`GET /v3/REST/message?CustomID=...`) and the v3 sender list (`GET /v3/REST/sender`),
for tests and manual tries.

    python -m tests.support.mailjet_server --port 8421

Shapes follow Mailjet's documentation: a send answers `{"Messages": [{"Status": "success",
"CustomID", "To": [{"Email", "MessageUUID", "MessageID", "MessageHref"}], "Cc": [], "Bcc": []}]}`;
a lookup answers `{"Count": n, "Data": [{"ID", "UUID", "CustomID", "Status", "ArrivedAt", ...}],
"Total": n}`; errors carry `ErrorIdentifier`, `ErrorMessage` and `StatusCode` (v3.1) or
`ErrorInfo`, `ErrorMessage` and `StatusCode` (v3 REST). Both check HTTP Basic auth against the
stand-in's key and secret (401 otherwise).

Every accepted message is remembered (`messages`) at the moment it arrives — before any
scripted delay, as Mailjet has it once the request is in — with an `ID`, and is what the
lookup finds. `deliveries()` counts them per CustomID: the figure "exactly once" is about.

Send answers are scripted per request (`script`, popped one per `POST`; empty: `success`):
- `success`; `error` (200 with a per-message error, nothing accepted);
- an HTTP status such as 500, 429, 400, 401, 403 (nothing accepted);
- `delay:SECONDS` — accept, then answer `success` that late (a client with a shorter timeout
  sees an ambiguous timeout although the message is in);
- `drop` — read the request, accept nothing, close the connection without an answer;
- `stall:SECONDS` — hold the request that long without accepting it, then close without an
  answer (the client's timeout fired before the message reached Mailjet);
- `accept-then-<answer>` — accept the message, then answer `<answer>` anyway (`accept-then-500`,
  `accept-then-drop`): a failure that hides a message Mailjet did take.
Lookup answers are scripted the same way (`lookup_script`, popped one per `GET`; empty: the
truth): `found` (the truth), an HTTP status (429, 500, 503...), `delay:SECONDS` (the truth, that
late), `lag` (`Count: 0` although the message is in: Mailjet's lookup data lagging behind).

`requests` records every send request when it arrives (auth refusals included), `lookups`
every lookup request.

Senders (`senders`, one `Active` entry for studio@example.com unless given): rows shaped like
Mailjet's `sender` resource (`ID`, `Email` — an address or a whole domain, `*@example.com` —,
`Name`, `Status` `Active` once validated or `Inactive`, `EmailType`, `IsDefaultSender`,
`CreatedAt`, `DNSID`, `Filename`), filtered by `Email` and `Status`, paged by `Limit` (default
10, at most 1000) and `Offset`. `sender_lookups` records those requests.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Mailjet's message ids are large integers (MessageID in a v3.1 answer = ID in /v3/REST/message).
FIRST_MESSAGE_ID = 288230376151711744

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def sender_row(email: str, *, status: str = "Active", sender_id: int = 1) -> dict:
    """A sender as Mailjet's `GET /v3/REST/sender` lists it (`*@domain` for a whole domain)."""
    return {
        "CreatedAt": "2026-09-01T10:00:00Z",
        "DNSID": 0,
        "Email": email,
        "EmailType": "transactional",
        "Filename": "",
        "ID": sender_id,
        "IsDefaultSender": False,
        "Name": "",
        "Status": status,
    }


class _Dropped(Exception):
    """The scripted answer is no answer: close the connection."""


class MailjetStub:
    """The server plus its scripts, the requests it received and the messages it accepted."""

    def __init__(
        self, port: int = 0, *, api_key: str = "mj-key", api_secret: str = "mj-secret", senders: list[dict] | None = None
    ):
        self.script: list[str | int] = []
        self.lookup_script: list[str | int] = []
        self.requests: list[dict] = []
        self.lookups: list[dict] = []
        self.sender_lookups: list[dict] = []
        self.messages: list[dict] = []
        self.senders: list[dict] = (
            senders if senders is not None else [sender_row("studio@example.com", status="Active", sender_id=1)]
        )
        self.lock = threading.Lock()
        self._authorization = "Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                authorized = self.headers.get("Authorization") == stub._authorization
                with stub.lock:
                    stub.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    answer = stub.script.pop(0) if stub.script and authorized and self.path == "/v3.1/send" else "success"
                if self.path != "/v3.1/send":
                    return self._error(404, "v3.1", "Not found")
                if not authorized:
                    return self._error(
                        401,
                        "v3.1",
                        "API key authentication/authorization failure. You may be "
                        "unauthorized to access the API or your API key may be expired.",
                    )
                if not isinstance(body.get("Messages"), list):
                    return self._error(
                        400, "v3.1", "Malformed JSON, please review the syntax and properties types.", ErrorCode="mj-0002"
                    )
                self._answer_send(answer, body["Messages"])

            def _answer_send(self, answer, messages: list[dict]):
                try:
                    if isinstance(answer, str) and answer.startswith("accept-then-"):
                        stub._accept(messages)
                        answer = answer.removeprefix("accept-then-")
                        answer = int(answer) if answer.isdigit() else answer
                        if answer == "drop":
                            raise _Dropped
                        return self._error(int(answer), "v3.1", f"scripted {answer}")
                    if answer == "drop":
                        raise _Dropped
                    if isinstance(answer, str) and answer.startswith("stall:"):
                        time.sleep(float(answer.split(":", 1)[1]))
                        raise _Dropped
                    if answer == "error":
                        return self._reply(
                            200,
                            {
                                "Messages": [
                                    {
                                        "Status": "error",
                                        "CustomID": message.get("CustomID", ""),
                                        "Errors": [
                                            {
                                                "ErrorIdentifier": str(uuid.uuid4()),
                                                "ErrorCode": "send-0003",
                                                "StatusCode": 400,
                                                "ErrorMessage": '"To" is an invalid email address.',
                                                "ErrorRelatedTo": ["To[0].Email"],
                                            }
                                        ],
                                    }
                                    for message in messages
                                ]
                            },
                        )
                    if answer == "success" or (isinstance(answer, str) and answer.startswith("delay:")):
                        accepted = stub._accept(messages)  # in Mailjet's hands from now on, whatever the answer
                        if answer != "success":
                            time.sleep(float(answer.split(":", 1)[1]))
                        return self._reply(
                            200,
                            {
                                "Messages": [
                                    {
                                        "Status": "success",
                                        "CustomID": message["CustomID"],
                                        "To": [
                                            {
                                                "Email": to["Email"],
                                                "MessageUUID": message["UUID"],
                                                "MessageID": message["ID"],
                                                "MessageHref": f"{stub.url}v3/REST/message/{message['ID']}",
                                            }
                                            for to in message["To"]
                                        ],
                                        "Cc": [],
                                        "Bcc": [],
                                    }
                                    for message in accepted
                                ]
                            },
                        )
                    return self._error(int(answer), "v3.1", f"scripted {answer}")
                except _Dropped:
                    self._drop()

            def do_GET(self):
                url = urlsplit(self.path)
                query = {key: values[-1] for key, values in parse_qs(url.query).items()}
                authorized = self.headers.get("Authorization") == stub._authorization
                if url.path == "/v3/REST/sender":
                    return self._answer_senders(query, authorized)
                with stub.lock:
                    stub.lookups.append({"path": url.path, "query": query, "headers": dict(self.headers)})
                    answer = (
                        stub.lookup_script.pop(0)
                        if stub.lookup_script and authorized and url.path == "/v3/REST/message"
                        else "found"
                    )
                if url.path != "/v3/REST/message":
                    return self._error(404, "v3", "Object not found")
                if not authorized:
                    return self._error(401, "v3", "API key authentication/authorization failure.")
                if isinstance(answer, str) and answer.startswith("delay:"):
                    time.sleep(float(answer.split(":", 1)[1]))
                    answer = "found"
                if answer not in ("found", "lag"):
                    return self._error(int(answer), "v3", f"scripted {answer}")
                with stub.lock:
                    found = (
                        []
                        if answer == "lag"
                        else [
                            {key: value for key, value in message.items() if key != "To"}
                            for message in stub.messages
                            if "CustomID" not in query or message["CustomID"] == query["CustomID"]
                        ]
                    )
                self._reply(200, {"Count": len(found), "Data": found, "Total": len(found)})

            def _answer_senders(self, query: dict, authorized: bool):
                with stub.lock:
                    stub.sender_lookups.append({"query": query, "authorized": authorized})
                    rows = [
                        dict(row)
                        for row in stub.senders
                        if query.get("Email", row["Email"]).lower() == row["Email"].lower()
                        and query.get("Status", row["Status"]) == row["Status"]
                    ]
                if not authorized:
                    return self._error(401, "v3", "API key authentication/authorization failure.")
                try:
                    limit, offset = min(int(query.get("Limit", 10)), 1000), int(query.get("Offset", 0))
                except ValueError:
                    return self._error(400, "v3", "Invalid Limit or Offset")
                page = rows[offset : offset + limit]
                self._reply(200, {"Count": len(page), "Data": page, "Total": len(rows)})

            def _error(self, status: int, version: str, message: str, **extra):
                if version == "v3.1":
                    payload = {"ErrorIdentifier": str(uuid.uuid4()), "StatusCode": status, "ErrorMessage": message} | extra
                else:
                    payload = {"ErrorInfo": "", "ErrorMessage": message, "StatusCode": status} | extra
                self._reply(status, payload)

            def _reply(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status, REASONS.get(status))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left (a `delay:` answer)

            def _drop(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True  # a held (delayed) answer never blocks stop()
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _accept(self, messages: list[dict]) -> list[dict]:
        """Remember messages as Mailjet does once a send request is in (an ID each)."""
        accepted = []
        with self.lock:
            for message in messages:
                record = {
                    "ID": FIRST_MESSAGE_ID + len(self.messages),
                    "UUID": str(uuid.uuid4()),
                    "CustomID": message.get("CustomID", ""),
                    "Status": "queued",
                    "ArrivedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "Subject": message.get("Subject", ""),
                    "AttemptCount": 0,
                    "From": (message.get("From") or {}).get("Email", ""),
                    "To": [{"Email": to.get("Email", "")} for to in message.get("To", [])],
                }
                self.messages.append(record)
                accepted.append(record)
        return accepted

    def start(self) -> MailjetStub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent_custom_ids(self) -> list[str]:
        """CustomIDs of every send request received (accepted or not), in arrival order."""
        return [message.get("CustomID") for request in self.requests for message in request["body"].get("Messages", [])]

    def deliveries(self) -> Counter:
        """How many times Mailjet accepted a message, per CustomID (the "exactly once" figure)."""
        with self.lock:
            return Counter(message["CustomID"] for message in self.messages)

    def lookup_custom_ids(self) -> list[str]:
        """The CustomID each lookup asked for, in arrival order."""
        with self.lock:
            return [lookup["query"].get("CustomID") for lookup in self.lookups]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8421)
    args = parser.parse_args(argv)
    stub = MailjetStub(args.port).start()
    print(f"local Mailjet on {stub.url} (key mj-key, secret mj-secret)", flush=True)
    try:
        stub.thread.join()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
