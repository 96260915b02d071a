"""Sending one SmsLog row, exactly once, through Twilio's Messages API (or the file backend).

The only module that imports `twilio`. The row is the source of truth, as for emails
(`workers/mailer.py`): claimed `queued` → `sending` (attempts + 1) in its own transaction,
rendered once (the body is kept on the row, so every attempt sends the same text), then `sent`
with Twilio's sid and status, back to `queued` on a transient error (Huey retries), or
`failed` for good: a DeadLetter and an admin alert.

What is retried, and how a resend is kept from delivering twice
----------------------------------------------------------------
- 429 (rate limited) and a connection never made: transient, Twilio did not take the message.
- 5xx, a read timeout, a connection lost once connected: ambiguous, Twilio may have it.
- any other 4xx (21211 invalid To, 21610 unsubscribed, 20003 bad credentials...): terminal.

Twilio's Messages API takes no client reference and ignores idempotency keys, so **every
attempt after the first looks the row's message up before sending**: the messages Twilio holds
to the row's number (`GET /2010-04-01/Accounts/{sid}/Messages.json?To=...`), one whose body is
the row's body and that was created after the row was → the row is `sent` with that sid,
nothing resent. A row's body is unique to it (the dedupe key allows one row per lesson and
channel, and the text names the lesson's date and time). A lookup that cannot answer is
transient: never a blind resend.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

from models import logs
from models.base import utcnow
from models.config import Settings, get_settings
from models.db import session_scope
from models.outbox import add_dead_letter, queue_admin_alert
from models.sms import SMS_TEMPLATES, claim_sms, get_sms, mark_sms_failed, mark_sms_sent

log = logging.getLogger(__name__)
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates" / "sms"
MAX_SMS_CHARS = 320  # two concatenated GSM segments at most
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


class TransientSmsError(Exception):
    """Try again later: rate limited, no connection; Twilio did not take the message."""


class AmbiguousSmsError(TransientSmsError):
    """Try again later, but Twilio may have the message: the next attempt looks it up first."""


class TerminalSmsError(Exception):
    """Retrying will not help: Twilio refused the message (a 4xx other than 429), or it cannot render."""


@functools.cache
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), undefined=StrictUndefined, autoescape=False)


def render_sms(template: str, context: dict) -> str:
    """The text of `template` with `context`, on one line, at most MAX_SMS_CHARS characters."""
    if template not in SMS_TEMPLATES:
        raise TerminalSmsError(f"unknown SMS template {template!r}")
    values = {"studio_name": get_settings().STUDIO_NAME} | dict(context)
    try:
        text = environment().get_template(f"{template}.txt").render(values)
    except TemplateError as error:
        raise TerminalSmsError(f"SMS template {template}: {error}") from None
    text = " ".join(text.split())
    return text if len(text) <= MAX_SMS_CHARS else text[: MAX_SMS_CHARS - 1] + "…"


def sending_stale_after() -> timedelta:
    return timedelta(seconds=get_settings().SMS_SENDING_STALE_SECONDS)


class FileSmsBackend:
    """Writes each text as `sms/<id>-<template>.txt` in OUTBOX_DIR (the embedded default)."""

    def __init__(self, settings: Settings):
        self.directory = Path(settings.OUTBOX_DIR) / "sms"

    def send(self, *, sms_id: int, template: str, recipient: str, body: str) -> tuple[str, str]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{sms_id:06d}-{template}.txt"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(f"To: {recipient}\n\n{body}\n", encoding="utf-8")
            temporary.replace(path)  # the same name on a retry: one file per text
        except OSError as error:
            raise TransientSmsError(f"cannot write to {self.directory}: {error}") from None
        return f"file:{path.name}", "delivered"

    def find(self, *, recipient: str, body: str, since: datetime) -> tuple[str, str] | None:
        return None  # a resend rewrites the same file


class TwilioBackend:
    """Twilio's Messages API through the official client, pointed at TWILIO_API_BASE when set
    (the `api` domain's base URL; tests: the local stand-in). Huey owns retries: the client does none."""

    def __init__(self, settings: Settings):
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self.client = Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT_SECONDS, max_retries=0),
        )
        if settings.TWILIO_API_BASE:
            self.client.api.base_url = settings.TWILIO_API_BASE.rstrip("/")
        self.sender = settings.TWILIO_FROM

    def send(self, *, sms_id: int, template: str, recipient: str, body: str) -> tuple[str, str]:
        """POST Messages.json (To, From, Body); Twilio's sid and status."""
        try:
            message = self.client.messages.create(to=recipient, from_=self.sender, body=body)
        except Exception as error:
            raise _classify(error, "send") from None
        return str(message.sid), str(message.status or "")

    def find(self, *, recipient: str, body: str, since: datetime) -> tuple[str, str] | None:
        """The message Twilio holds to `recipient` with this `body`, created at or after `since`."""
        try:
            messages = self.client.messages.list(to=recipient, page_size=100, limit=100)
        except Exception as error:
            raise TransientSmsError(f"Twilio lookup failed, not resent: {_classify(error, 'lookup')}") from None
        cutoff = since - timedelta(minutes=5)  # clocks differ a little
        for message in messages:
            created = message.date_created
            # A trial account's texts carry Twilio's prefix ("Sent from your Twilio trial account - ...").
            held = message.body or ""
            if (held == body or held.endswith(f" - {body}")) and (created is None or created >= cutoff):
                return str(message.sid), str(message.status or "")
        return None


def _classify(error: Exception, what: str) -> Exception:
    """A Twilio or network failure as Transient, Ambiguous or Terminal."""
    from requests import exceptions as http
    from twilio.base.exceptions import TwilioRestException

    if isinstance(error, TwilioRestException):
        detail = f"Twilio {what} answered {error.status} (code {error.code}): {error.msg}"[:500]
        if error.status == 429:
            return TransientSmsError(detail)
        if error.status >= 500:
            return AmbiguousSmsError(f"ambiguous: {detail}")
        return TerminalSmsError(detail)
    if isinstance(error, (http.ConnectTimeout,)) or (
        isinstance(error, http.ConnectionError) and "NewConnectionError" in repr(error)
    ):
        return TransientSmsError(f"Twilio unreachable ({what}): {type(error).__name__}")
    if isinstance(error, http.RequestException):
        return AmbiguousSmsError(f"ambiguous: Twilio {what} failed: {type(error).__name__}: {error}"[:500])
    return error


def backend_for(settings: Settings) -> Any:
    return TwilioBackend(settings) if settings.sms_backend == "twilio" else FileSmsBackend(settings)


def _give_up(sms_id: int, error: str) -> None:
    """Failed for good: the row, a dead letter and an admin alert."""
    with session_scope() as session:
        sms = get_sms(session, sms_id)
        if sms.status == "sent":
            return
        mark_sms_failed(session, sms, error=error, final=True)
        add_dead_letter(session, kind="send_sms", payload={"sms_id": sms_id}, error=error)
        queue_admin_alert(
            session,
            subject=f"SMS {sms_id} ({sms.template}) to {sms.recipient} failed",
            message=f"{error}. Check the number with the family, then `studioctl sms retry {sms_id}`.",
            dedupe_key=f"sms_failed:{sms_id}",
        )


def deliver(sms_id: int) -> str:
    """Send SmsLog `sms_id` once: `sent`, `skipped` (nothing to do) or `failed` (for good).
    Raises TransientSmsError (the row is `queued` again) so the task is retried."""
    with session_scope() as session:
        sms = claim_sms(session, sms_id, stale_before=utcnow() - sending_stale_after())
        if sms is None:
            return "skipped"
        if sms.body is None:
            try:
                sms.body = render_sms(sms.template, dict(sms.context))
            except TerminalSmsError as error:
                render_error: str | None = str(error)
            else:
                render_error = None
                session.add(sms)
        else:
            render_error = None
        recipient, template, body, attempt, created = sms.recipient, sms.template, sms.body, sms.attempts, sms.created_at
    if render_error is not None or body is None:
        _give_up(sms_id, render_error or "nothing to send")
        return "failed"
    backend = backend_for(get_settings())
    outcome = "sent"
    try:
        found = backend.find(recipient=recipient, body=body, since=created) if attempt > 1 else None
        if found is not None:
            outcome = "already_sent"
            sid, status = found
        else:
            sid, status = backend.send(sms_id=sms_id, template=template, recipient=recipient, body=body)
    except TransientSmsError as error:
        with session_scope() as session:
            mark_sms_failed(session, get_sms(session, sms_id), error=str(error), final=False)
        logs.event(log, "sms.send", level=logging.WARNING, sms_id=sms_id, attempt=attempt, outcome="retry")
        raise
    except TerminalSmsError as error:
        _give_up(sms_id, str(error))
        logs.event(log, "sms.send", level=logging.WARNING, sms_id=sms_id, attempt=attempt, outcome="failed")
        return "failed"
    with session_scope() as session:
        mark_sms_sent(session, get_sms(session, sms_id), provider_sid=sid, provider_status=status, body=body)
    logs.event(log, "sms.send", sms_id=sms_id, template=template, attempt=attempt, outcome=outcome)
    return "sent"


def give_up_after_retries(sms_id: int, error: str) -> None:
    """The send task ran out of retries (called from the final SIGNAL_ERROR)."""
    _give_up(sms_id, f"gave up after retries: {error}")
