"""Sending one EmailLog row, exactly once, through the configured backend.

The row is the source of truth: `queued` → `sending` (claimed in its own transaction,
attempts + 1) → `sent` with the provider's message id, or back to `queued` on a transient
error (Huey retries), or `failed` for good (DeadLetter + admin alert). A retried or
duplicated task finds the row `sent` or being sent and does nothing.

Backends: `mailjet` (v3.1 send API; a `CustomID` per message so a retried send after an
ambiguous timeout can be traced) and `file` (an .eml per email in OUTBOX_DIR).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid
from pathlib import Path

from models.base import utcnow
from models.config import Settings, get_settings
from models.db import session_scope
from models.outbox import (
    add_dead_letter, claim_email, get_email, mark_email_failed, mark_email_sent, queue_admin_alert,
)
from workers.emails import RenderedEmail, RenderError, render_email

log = logging.getLogger(__name__)

# A `sending` row older than this was left by a worker that died mid-send: take it over.
STALE_SENDING = timedelta(minutes=10)


def mailjet_timeout() -> float:
    """Seconds to wait for Mailjet's answer (`MAILJET_TIMEOUT_SECONDS`, default 15); a timeout is
    retried like a 5xx (ambiguous: the CustomID and the client's Idempotency-Key make it traceable)."""
    return get_settings().MAILJET_TIMEOUT_SECONDS


class TransientEmailError(Exception):
    """Try again later: rate limited, provider 5xx, network error or timeout."""


class TerminalEmailError(Exception):
    """Retrying will not help: rejected by the provider (400/403) or a per-message error."""


def custom_id(email_id: int) -> str:
    """The Mailjet CustomID of an email (stable across attempts)."""
    return f"email-{email_id}"


_UTF8_8BIT = Charset("utf-8")
_UTF8_8BIT.body_encoding = None  # 8bit, readable in the .eml (as EmailMessage.set_content wrote it)
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _text_part(body: str, subtype: str) -> MIMEText:
    if any(len(line) > 990 for line in body.splitlines()):
        return MIMEText(body, subtype, _UTF8_QP)  # no line past SMTP's 998 octets
    return MIMEText(body, subtype, "us-ascii" if body.isascii() else _UTF8_8BIT)


class FileBackend:
    """Writes each email as `<id>-<template>.eml` in OUTBOX_DIR (the embedded default)."""

    def __init__(self, settings: Settings):
        self.directory = Path(settings.OUTBOX_DIR)
        self.sender = settings.MAILJET_SENDER_EMAIL
        self.studio = settings.STUDIO_NAME

    def send(self, *, email_id: int, template: str, recipient: str, message: RenderedEmail) -> str:
        # The compat32 MIME classes: the same multipart/alternative message (UTF-8 parts 8bit,
        # RFC 2047 subject) for a third of `EmailMessage`'s header-parsing CPU (bench/pipeline.py).
        mail = MIMEMultipart("alternative")
        mail["From"] = formataddr((self.studio, self.sender), charset="utf-8")
        mail["To"] = recipient
        mail["Subject"] = message.subject if message.subject.isascii() else Header(message.subject, "utf-8")
        mail["Message-ID"] = make_msgid(idstring=custom_id(email_id), domain="studio.local")
        mail["X-Studio-Template"] = template
        mail.attach(_text_part(message.text, "plain"))
        mail.attach(_text_part(message.html, "html"))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{email_id:06d}-{template}.eml"
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(bytes(mail))
            temporary.replace(path)  # same name on a retry: one file per email, never two
        except OSError as error:
            raise TransientEmailError(f"cannot write to {self.directory}: {error}") from None
        return f"file:{path.name}"


class MailjetBackend:
    """Mailjet's v3.1 send API through mailjet-rest (Huey owns retries, the client does none)."""

    def __init__(self, settings: Settings):
        from mailjet_rest import Client
        from urllib3.util.retry import Retry

        options = {"version": "v3.1", "timeout": mailjet_timeout()}
        if settings.MAILJET_API_URL:
            options["api_url"] = settings.MAILJET_API_URL
        self.client = Client(auth=(settings.MAILJET_API_KEY, settings.MAILJET_API_SECRET), **options)
        for adapter in self.client.session.adapters.values():
            adapter.max_retries = Retry(total=0, raise_on_status=False)
        self.sender = settings.MAILJET_SENDER_EMAIL
        self.studio = settings.STUDIO_NAME

    def send(self, *, email_id: int, template: str, recipient: str, message: RenderedEmail) -> str:
        from mailjet_rest import errors

        payload = {"Messages": [{
            "From": {"Email": self.sender, "Name": self.studio},
            "To": [{"Email": recipient}],
            "Subject": message.subject,
            "TextPart": message.text,
            "HTMLPart": message.html,
            "CustomID": custom_id(email_id),
        }]}
        try:
            response = self.client.send.create(data=payload)  # the client adds an Idempotency-Key hashed from the payload
        except errors.ApiRateLimitError as error:
            raise TransientEmailError(f"Mailjet rate limit: {error}") from None
        except (errors.MailjetAuthError, errors.ValidationError, errors.DoesNotExistError) as error:
            raise TerminalEmailError(f"Mailjet refused the message ({getattr(error, 'status_code', '?')}): {error}") from None
        except errors.ApiError as error:  # network, timeout, 5xx
            raise TransientEmailError(f"Mailjet unavailable: {error}") from None
        try:
            result = response.json()["Messages"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TransientEmailError(f"Mailjet answered {response.status_code} without a message status") from None
        if result.get("Status") != "success":
            details = "; ".join(str(item.get("ErrorMessage", item)) for item in result.get("Errors") or []) or str(result)
            raise TerminalEmailError(f"Mailjet rejected the message: {details}"[:500])
        sent = (result.get("To") or [{}])[0]
        return str(sent.get("MessageUUID") or sent.get("MessageID") or custom_id(email_id))


def backend_for(settings: Settings):
    """The backend named by the settings."""
    return MailjetBackend(settings) if settings.email_backend == "mailjet" else FileBackend(settings)


def _give_up(email_id: int, error: str) -> None:
    """Failed for good: the row, a dead letter, and the admin (unless this was an admin alert)."""
    with session_scope() as session:
        email = get_email(session, email_id)
        if email.status == "sent":
            return
        mark_email_failed(session, email, error=error, final=True)
        add_dead_letter(session, kind="send_email", payload={"email_id": email_id}, error=error)
        if email.template != "admin_alert":
            queue_admin_alert(
                session, subject=f"Email {email_id} ({email.template}) to {email.recipient} failed",
                message=error, dedupe_key=f"email_failed:{email_id}", admins=get_settings().admin_emails,
            )


def deliver(email_id: int) -> str:
    """Send EmailLog `email_id` once: `sent`, `skipped` (nothing to do) or `failed` (for good).

    Raises TransientEmailError so the task is retried (the row is `queued` again)."""
    with session_scope() as session:
        email = claim_email(session, email_id, stale_before=utcnow() - STALE_SENDING)
        if email is None:
            return "skipped"
        recipient, template, context = email.recipient, email.template, dict(email.context)
    settings = get_settings()
    try:
        message = render_email(template, context)
        provider_id = backend_for(settings).send(email_id=email_id, template=template, recipient=recipient, message=message)
    except TransientEmailError as error:
        with session_scope() as session:
            mark_email_failed(session, get_email(session, email_id), error=str(error), final=False)
        raise
    except (TerminalEmailError, RenderError) as error:
        _give_up(email_id, str(error))
        return "failed"
    with session_scope() as session:
        mark_email_sent(session, get_email(session, email_id), subject=message.subject, provider_message_id=provider_id)
    return "sent"


def give_up_after_retries(email_id: int, error: str) -> None:
    """The send task ran out of retries (called from the final SIGNAL_ERROR)."""
    _give_up(email_id, f"gave up after retries: {error}")
