"""Sending one EmailLog row, exactly once, through the configured backend.

The row is the source of truth: `queued` → `sending` (claimed in its own transaction,
attempts + 1) → `sent` with the provider's message id, or back to `queued` on a transient
error (Huey retries), or `failed` for good (DeadLetter + admin alert). A retried or
duplicated task finds the row `sent` or being sent and does nothing.

Backends: `mailjet` (v3.1 send API, a `CustomID` per message, and the v3 message lookup by
that CustomID) and `file` (an .eml per email in OUTBOX_DIR).

Exactly one delivery per email, when Mailjet's answers are ambiguous
--------------------------------------------------------------------
Some failures say nothing about whether Mailjet took the message:

- ambiguous (`AmbiguousEmailError`): a read timeout (the request was written, the answer did
  not come in MAILJET_TIMEOUT_SECONDS), a connection dropped or reset once connected (the
  request may have been written), any 5xx (a 500 is raised wherever Mailjet's processing
  failed, a 502/504 by a proxy that may have forwarded the request), a 2xx whose body is not
  a message status;
- not ambiguous: a 429 (refused before any processing), a connection that was never made
  (refused, DNS, connect timeout), and the terminal 400/401/403/404 and per-message `error`.

Mailjet does not drop a duplicate by the client's Idempotency-Key (measured: a late answer
made the old code deliver each such message twice), so the rule is ours: **every attempt
after the first (attempts > 1 once claimed) looks the message up by its CustomID
(`GET /v3/REST/message?CustomID=email-<id>`) before sending**. The rule keys on the attempt
count rather than on the last error because ambiguity is sticky — after a timeout, a later
429 does not prove the first message never arrived — and because a worker killed mid-send
leaves no error at all (its row stays `sending`, attempts already counted; `retry_stuck_emails`
claims it again after EMAIL_SENDING_STALE_SECONDS). A message Mailjet knows marks the row
`sent` with Mailjet's message id (`ID`); only a message it does not know is sent again; a
lookup that cannot answer (timeout, 5xx, 429) is a transient error: the row goes back to
`queued` and Huey retries — never a blind send.

Mailjet's lookup data can lag a little behind a send. The first lookup of an email comes a
retry delay (WORKER_RETRY_DELAY, 30 s by default, growing by WORKER_RETRY_BACKOFF) or
EMAIL_SENDING_STALE_SECONDS after the attempt it checks, which covers that lag; a retry delay
shrunk to near zero would weaken the guarantee. The row's `error` says which failures were
ambiguous ("ambiguous: ...").
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import Any

from models import logs
from models.base import utcnow
from models.config import Settings, get_settings
from models.db import session_scope
from models.outbox import add_dead_letter, claim_email, get_email, mark_email_failed, mark_email_sent, queue_admin_alert
from workers import metrics
from workers.emails import RenderedEmail, RenderError, render_email

log = logging.getLogger(__name__)


def mailjet_timeout() -> float:
    """Seconds to wait for Mailjet's answer (`MAILJET_TIMEOUT_SECONDS`, default 15), for a send or a
    lookup; a timed-out send is ambiguous and is looked up by its CustomID before any resend."""
    return get_settings().MAILJET_TIMEOUT_SECONDS


def sending_stale_after() -> timedelta:
    """How long a row may stay `sending` before it counts as left by a dead worker and is taken
    over (`EMAIL_SENDING_STALE_SECONDS`); it must exceed MAILJET_TIMEOUT_SECONDS, or a live send
    could be taken over while Mailjet is still answering it."""
    return timedelta(seconds=get_settings().EMAIL_SENDING_STALE_SECONDS)


class TransientEmailError(Exception):
    """Try again later: rate limited, provider 5xx, network error or timeout."""


class AmbiguousEmailError(TransientEmailError):
    """Try again later, but the provider may have taken the message: the next attempt looks it up
    before sending (timeout after the request was written, connection lost once connected, 5xx)."""


class TerminalEmailError(Exception):
    """Retrying will not help: rejected by the provider (400/401/403/404) or a per-message error."""


def custom_id(email_id: int) -> str:
    """The Mailjet CustomID of an email (stable across attempts)."""
    return f"email-{email_id}"


_UTF8_8BIT = Charset("utf-8")
_UTF8_8BIT.body_encoding = None  # 8bit, readable in the .eml (as EmailMessage.set_content wrote it)
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _text_part(body: str, subtype: str) -> MIMEText:
    # MIMEText takes a Charset object too (typeshed says str only).
    charset: Any = (
        _UTF8_QP
        if any(len(line) > 990 for line in body.splitlines())
        # no line past SMTP's 998 octets
        else ("us-ascii" if body.isascii() else _UTF8_8BIT)
    )
    return MIMEText(body, subtype, charset)


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
        mail["Subject"] = message.subject if message.subject.isascii() else Header(message.subject, "utf-8")  # type: ignore[assignment]
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

    def find(self, *, email_id: int) -> str | None:
        """Nothing to look up: a resend rewrites the same file, so it is never delivered twice."""
        return None


class MailjetBackend:
    """Mailjet's v3.1 send API and v3 message lookup through mailjet-rest (Huey owns retries, the
    clients do none)."""

    def __init__(self, settings: Settings):
        from mailjet_rest import Client
        from urllib3.util.retry import Retry

        options: dict[str, Any] = {"timeout": mailjet_timeout()}
        if settings.MAILJET_API_URL:
            options["api_url"] = settings.MAILJET_API_URL
        auth = (settings.MAILJET_API_KEY, settings.MAILJET_API_SECRET)
        self.client = Client(auth=auth, version="v3.1", **options)
        self.rest = Client(auth=auth, version="v3", **options)  # /v3/REST/message lives in v3 only
        for client in (self.client, self.rest):
            # mailjet-rest retries 5xx and 429 itself (POST included): a hidden resend; Huey retries instead.
            for adapter in client.session.adapters.values():
                adapter.max_retries = Retry(total=0, raise_on_status=False)  # type: ignore[attr-defined]
        self.sender = settings.MAILJET_SENDER_EMAIL
        self.studio = settings.STUDIO_NAME

    def send(self, *, email_id: int, template: str, recipient: str, message: RenderedEmail) -> str:
        """Send one message with CustomID `email-<id>`; returns Mailjet's MessageUUID.

        Raises TerminalEmailError (400/401/403/404, per-message error), AmbiguousEmailError (see the
        module docstring: Mailjet may have the message) or TransientEmailError (429, no connection)."""
        from mailjet_rest import errors

        payload = {
            "Messages": [
                {
                    "From": {"Email": self.sender, "Name": self.studio},
                    "To": [{"Email": recipient}],
                    "Subject": message.subject,
                    "TextPart": message.text,
                    "HTMLPart": message.html,
                    "CustomID": custom_id(email_id),
                }
            ]
        }
        try:
            response = self.client.send.create(data=payload)
        except errors.ApiRateLimitError as error:
            raise TransientEmailError(f"Mailjet rate limit: {error}") from None
        except (errors.MailjetAuthError, errors.ValidationError, errors.DoesNotExistError) as error:
            raise TerminalEmailError(f"Mailjet refused the message ({getattr(error, 'status_code', '?')}): {error}") from None
        except errors.ApiError as error:  # network, timeout, 5xx
            if _never_connected(error):
                raise TransientEmailError(f"Mailjet unavailable: {error}") from None
            raise AmbiguousEmailError(f"ambiguous: Mailjet unavailable: {error}") from None
        try:
            result = response.json()["Messages"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AmbiguousEmailError(f"ambiguous: Mailjet answered {response.status_code} without a message status") from None
        if result.get("Status") != "success":
            details = "; ".join(str(item.get("ErrorMessage", item)) for item in result.get("Errors") or []) or str(result)
            raise TerminalEmailError(f"Mailjet rejected the message: {details}"[:500])
        sent = (result.get("To") or [{}])[0]
        return str(sent.get("MessageUUID") or sent.get("MessageID") or custom_id(email_id))

    def find(self, *, email_id: int) -> str | None:
        """Mailjet's message id (`ID`) of the message it holds with this email's CustomID, or None
        when it holds none (`GET /v3/REST/message?CustomID=email-<id>`).

        Raises TransientEmailError when the lookup cannot answer (timeout, connection, 5xx, 429,
        an unreadable body): "unknown" is only ever a real `Count: 0`. A 400/401/403/404 is
        TerminalEmailError, as for a send. Mailjet's data can lag a little behind a send; the
        caller looks up a retry delay after the attempt in doubt (see the module docstring)."""
        from mailjet_rest import errors

        wanted = custom_id(email_id)
        try:
            # ShowCustomID: each row says its CustomID, so a filter the server ignored is noticed.
            response = self.rest.message.get(filters={"CustomID": wanted, "ShowCustomID": "true"})
        except errors.ApiRateLimitError as error:
            raise TransientEmailError(f"Mailjet lookup rate limited, not resent: {error}") from None
        except (errors.MailjetAuthError, errors.ValidationError, errors.DoesNotExistError) as error:
            raise TerminalEmailError(f"Mailjet refused the lookup ({getattr(error, 'status_code', '?')}): {error}") from None
        except errors.ApiError as error:
            raise TransientEmailError(f"Mailjet lookup failed, not resent: {error}") from None
        try:
            rows = response.json()["Data"]
            found = sorted(int(row["ID"]) for row in rows if row.get("CustomID", wanted) == wanted)
        except (ValueError, KeyError, TypeError):
            raise TransientEmailError(f"Mailjet lookup answered {response.status_code} without a message list") from None
        if len(found) > 1:  # sent twice before lookups existed (or by hand): the first one counts
            log.warning("Mailjet holds %d messages with CustomID %s: %s", len(found), wanted, found)
        return str(found[0]) if found else None

    def sender_status(self, *, timeout: float) -> str | None:
        """Mailjet's status of the sender this code sends from (MAILJET_SENDER_EMAIL): `Active`
        once validated (the address itself, or its whole domain, `*@domain`), else `Inactive`
        while it waits for validation; None when neither is registered. A read that changes nothing
        (`GET /v3/REST/sender`), so it also proves the credentials.

        Raises TerminalEmailError when Mailjet refuses the credentials (401/403) or the request,
        TransientEmailError when it cannot answer (timeout, connection, 5xx, 429)."""
        from mailjet_rest import errors

        try:
            response = self.rest.sender.get(filters={"Limit": 1000}, timeout=timeout)
        except (errors.MailjetAuthError, errors.ValidationError, errors.DoesNotExistError) as error:
            raise TerminalEmailError(f"Mailjet refused the request ({getattr(error, 'status_code', '?')}): {error}") from None
        except errors.ApiError as error:  # its message ends in the whole urllib3 chain: the first clause says it
            raise TransientEmailError(f"Mailjet did not answer ({str(error).split(':', 1)[0]})") from None
        try:
            senders = {str(row["Email"]).lower(): str(row.get("Status")) for row in response.json()["Data"]}
        except (ValueError, KeyError, TypeError):
            raise TransientEmailError(f"Mailjet answered {response.status_code} without a sender list") from None
        address = self.sender.lower()
        found = [status for status in (senders.get(address), senders.get("*@" + address.rpartition("@")[2])) if status]
        return "Active" if "Active" in found else next(iter(found), None)


def _never_connected(error: Exception) -> bool:
    """True when a mailjet-rest network error proves the request never left: no connection was
    made (refused, DNS, connect timeout). Anything else after connecting is ambiguous."""
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError and NameResolutionError too

    cause = error.__cause__
    if isinstance(cause, ConnectTimeout):
        return True
    reason = getattr(cause.args[0], "reason", None) if cause is not None and cause.args else None
    return isinstance(reason, ConnectTimeoutError)


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
                session,
                subject=f"Email {email_id} ({email.template}) to {email.recipient} failed",
                message=error,
                dedupe_key=f"email_failed:{email_id}",
            )


def deliver(email_id: int) -> str:
    """Send EmailLog `email_id` once: `sent`, `skipped` (nothing to do) or `failed` (for good).

    Every attempt after the first (the row's attempts > 1 once claimed: a Huey retry, a row a
    dead worker left `sending` taken over after EMAIL_SENDING_STALE_SECONDS, an admin's requeue)
    first looks the message up at the provider by its CustomID: found → `sent` with the
    provider's message id, nothing sent; not found → sent. Raises TransientEmailError (the row
    is `queued` again) so the task is retried — also when the lookup could not answer."""
    started = time.perf_counter()
    with session_scope() as session:
        email = claim_email(session, email_id, stale_before=utcnow() - sending_stale_after())
        if email is None:
            return "skipped"
        recipient, template, context, attempt = email.recipient, email.template, dict(email.context), email.attempts
    settings = get_settings()
    outcome = "sent"
    try:
        message = render_email(template, context)
        backend = backend_for(settings)
        # An earlier attempt may have reached the provider without us hearing so: look first.
        provider_id = backend.find(email_id=email_id) if attempt > 1 else None
        if provider_id is not None:
            outcome = "already_sent"
            log.info("email %s: the provider already has it (message %s), not sent again", email_id, provider_id)
        else:
            provider_id = backend.send(email_id=email_id, template=template, recipient=recipient, message=message)
    except TransientEmailError as error:
        with session_scope() as session:
            mark_email_failed(session, get_email(session, email_id), error=str(error), final=False)
        _note_send(email_id, template, attempt, "retry", started, error=error)
        raise
    except (TerminalEmailError, RenderError) as error:
        _give_up(email_id, str(error))
        _note_send(email_id, template, attempt, "failed", started, error=error)
        return "failed"
    with session_scope() as session:
        mark_email_sent(session, get_email(session, email_id), subject=message.subject, provider_message_id=provider_id)
    _note_send(email_id, template, attempt, outcome, started, provider_message_id=provider_id, backend=settings.email_backend)
    return "sent"


def _note_send(email_id: int, template: str, attempt: int, outcome: str, started: float, *, error=None, **fields) -> None:
    """One `email.send` event (never the recipient or the body) and the count by template and outcome."""
    metrics.EMAILS.labels(template, outcome).inc()
    logs.event(
        log,
        "email.send",
        level=logging.INFO if error is None else logging.WARNING,
        email_id=email_id,
        template=template,
        attempt=attempt,
        outcome=outcome,
        error=type(error).__name__ if error is not None else None,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        **fields,
    )


def give_up_after_retries(email_id: int, error: str) -> None:
    """The send task ran out of retries (called from the final SIGNAL_ERROR)."""
    _give_up(email_id, f"gave up after retries: {error}")
