"""One logging set-up for every process (the API, the consumer, the CLI) and the context its
lines carry. Standard library only: cheap enough for `studioctl --help` to import.

- `configure(level=, fmt=)`: one handler on the root logger, on stderr: JSON lines (`json`, one
  object per line for a log pipeline) or readable lines (`text`). Called again, it replaces the
  handler it installed and nothing else (a test's capture handler stays).
- The context: `context(**fields)` (or `bind`/`reset`) adds fields — `request_id`, `task`,
  `enrollment_id`... — to every line logged in this thread until it ends. Each request, task and
  periodic job runs in its own.
- `event(logger, name, **fields)`: one event (`stripe.request`, `booking.step`...) with its fields.

Secrets are scrubbed from every line (`scrub`) as a last line of defence: Stripe client secrets
and keys, webhook secrets, JWTs, bearer tokens, calendar tokens. The code logs no request or
response bodies; this catches an error message that quotes one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_context: ContextVar[dict[str, Any] | None] = ContextVar("studio_log_context", default=None)

# A client's X-Request-ID is kept only when it is short and plain (it lands in logs and headers).
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_SECRETS = re.compile(
    r"\b(?:pi|seti|src|cs)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"  # client secrets
    r"|_secret_[A-Za-z0-9]+"
    r"|\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9]+"  # Stripe API keys
    r"|\bwhsec_[A-Za-z0-9]+"  # webhook signing secrets
    r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWTs
    r"|(?<=Bearer )[A-Za-z0-9._~+/=-]+"
    r"|(?<=token=)[^&\s\"']+"  # the calendar feed's ?token=
)


def scrub(text: str) -> str:
    """`text` with anything shaped like a secret replaced by `[redacted]`."""
    return _SECRETS.sub("[redacted]", text)


def current() -> dict[str, Any]:
    """The fields every line logged here carries now."""
    return dict(_context.get() or {})


def bind(**fields: Any) -> Token:
    """Add `fields` to the context (None values are left out); `reset(token)` undoes it."""
    merged = {**(_context.get() or {}), **{key: value for key, value in fields.items() if value is not None}}
    return _context.set(merged)


def reset(token: Token) -> None:
    """Put the context back as it was before the `bind` that returned `token`."""
    _context.reset(token)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """The context with `fields` added, for the block's duration."""
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


def new_id(prefix: str = "") -> str:
    """A fresh id for a request, task or job (`job-3f2a...`)."""
    value = uuid.uuid4().hex
    return f"{prefix}-{value[:20]}" if prefix else value


def request_id(offered: str | None) -> str:
    """The client's X-Request-ID when sane (≤ 64 of A-Z a-z 0-9 . _ -), else a new id."""
    return offered if offered and REQUEST_ID.fullmatch(offered) else new_id()


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event `name` with its own `fields` (on top of the context's; None values left out)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": {key: value for key, value in fields.items() if value is not None}})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {**current(), **(getattr(record, "fields", None) or {})}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the context and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(line, default=str, ensure_ascii=False))


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if not text or any(c in text for c in ' ="\n') else text


class TextFormatter(logging.Formatter):
    """`2026-05-04T16:00:00.123Z INFO workers.pipeline: booking.step step=customer ... request_id=...`."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in _fields(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at each line (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of `fmt` (`json` or `text`)."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configured() -> bool:
    """True once `configure` installed its handler in this process."""
    return any(getattr(handler, "studio", False) for handler in logging.getLogger().handlers)


def configure(*, level: str | int = "INFO", fmt: str = "text") -> logging.Handler:
    """Send every logger's lines to stderr in `fmt`, from `level` up; returns the handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "studio", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.studio = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(fmt if fmt in FORMATS else "text"))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
