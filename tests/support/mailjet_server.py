"""A local stand-in for Mailjet's v3.1 send API (`POST /v3.1/send`), for tests and manual tries.

    python -m tests.support.mailjet_server --port 8421

Answers are scripted per request: `success` (default), `error` (200 with a per-message
error), an HTTP status such as 500, 429, 400, 403, or `delay:SECONDS` (accept the message,
then answer `success` that late: a client with a shorter timeout sees an ambiguous timeout).
Every request is recorded when it arrives.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MailjetStub:
    """The server plus its script and the requests it received."""

    def __init__(self, port: int = 0):
        self.script: list[str | int] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub.lock:
                    stub.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    answer = stub.script.pop(0) if stub.script else "success"
                if self.path != "/v3.1/send":
                    return self._reply(404, {"ErrorMessage": "not found"})
                if isinstance(answer, str) and answer.startswith("delay:"):
                    time.sleep(float(answer.split(":", 1)[1]))
                    answer = "success"
                messages = body.get("Messages") or []
                if answer == "success":
                    return self._reply(200, {"Messages": [{
                        "Status": "success", "CustomID": message.get("CustomID", ""),
                        "To": [{"Email": to["Email"], "MessageUUID": str(uuid.uuid4()), "MessageID": 1000 + len(stub.requests)}
                               for to in message.get("To", [])],
                    } for message in messages]})
                if answer == "error":
                    return self._reply(200, {"Messages": [{
                        "Status": "error", "CustomID": message.get("CustomID", ""),
                        "Errors": [{"ErrorCode": "mj-0013", "StatusCode": 400, "ErrorMessage": "\"To\" is an invalid email address."}],
                    } for message in messages]})
                return self._reply(int(answer), {"ErrorMessage": f"scripted {answer}", "StatusCode": int(answer)})

            def _reply(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left (a `delay:` answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "MailjetStub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent_custom_ids(self) -> list[str]:
        return [message.get("CustomID") for request in self.requests for message in request["body"].get("Messages", [])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8421)
    args = parser.parse_args(argv)
    stub = MailjetStub(args.port).start()
    print(f"local Mailjet on {stub.url}", flush=True)
    try:
        stub.thread.join()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
