"""The outbox: emails to send, dead letters, and stored API responses for idempotency keys.

Emails are written as `queued` EmailLog rows inside the caller's transaction, with a
dedupe key that is unique in the database; after commit a dispatcher (the workers
package registers one) enqueues the send task. A send that never happens (worker down,
enqueue failed) stays `queued` and the periodic email retry job finds it. A retried job
finds the row `sent` and sends nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit
from models.base import enum_check, json_column, utc_column, utcnow
from models.config import get_settings
from models.db import after_commit, lock_row
from models.dispatch import email_dispatcher
from models.errors import Conflict, NotFound

EMAIL_STATUSES = ("queued", "sending", "sent", "failed")
TEMPLATES = (
    "booking_confirmation",
    "provisional_notice",
    "no_show_notice",
    "make_up_invite",
    "make_up_confirmation",
    "admin_alert",
    "hold_expired",
    "payment_failed",
    "payment_action_required",
    "card_setup_failed",
    "enrollment_ending",
    "lesson_moved",
    "waitlist_offer",
    "lesson_reminder",
    "makeup_slots_available",
    "substitute_notice",
)


class EmailLog(SQLModel, table=True):
    """One email: its template, context, and every attempt's outcome."""

    __tablename__ = "email_log"
    __table_args__ = (enum_check("status", EMAIL_STATUSES, "status_known"),)

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(max_length=254, index=True)
    template: str = Field(max_length=40)
    subject: str = Field(default="", max_length=255)
    context: dict = Field(default_factory=dict, sa_column=json_column(nullable=False))
    status: str = Field(default="queued", max_length=16, index=True)
    attempts: int = Field(default=0)
    provider_message_id: str | None = Field(default=None, max_length=128)
    error: str | None = None
    dedupe_key: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column())


class DeadLetter(SQLModel, table=True):
    """A job that failed for good: what to replay, why it failed, whether the admin resolved it."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=60, index=True)
    payload: dict = Field(default_factory=dict, sa_column=json_column(nullable=False))
    error: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    retried_at: datetime | None = Field(default=None, sa_column=utc_column())
    resolved_at: datetime | None = Field(default=None, sa_column=utc_column())


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a POST carrying an `Idempotency-Key`, replayed for retries."""

    __tablename__ = "idempotency_record"
    __table_args__ = (sa.UniqueConstraint("payee_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    payee_id: int = Field(foreign_key="payee.id", ondelete="CASCADE")
    key: str = Field(max_length=200)
    fingerprint: str = Field(max_length=64)
    response_status: int
    response_body: dict = Field(default_factory=dict, sa_column=json_column(nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


def _dispatch_after_commit(session: Session, email_id: int) -> None:
    """Enqueue the send once the caller's transaction commits (if a dispatcher is installed)."""
    dispatcher = email_dispatcher()
    if dispatcher is not None:
        after_commit(session, lambda: dispatcher(email_id))


def queue_email(session: Session, *, template: str, recipient: str, context: dict, dedupe_key: str) -> EmailLog | None:
    """Queue an email in the caller's transaction; None when `dedupe_key` was queued before."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown email template {template!r}")
    if session.exec(select(EmailLog.id).where(EmailLog.dedupe_key == dedupe_key)).first() is not None:
        return None
    email = EmailLog(recipient=recipient, template=template, context=context, dedupe_key=dedupe_key)
    session.add(email)
    session.flush()
    _dispatch_after_commit(session, email.id)
    return email


def queue_admin_alert(session: Session, *, subject: str, message: str, dedupe_key: str) -> list[EmailLog]:
    """Queue an `admin_alert` to every admin address of the settings (ADMIN_EMAIL_ALLOWLIST;
    none configured: nothing is queued), each deduplicated by `dedupe_key` and the address."""
    queued = []
    for admin in get_settings().admin_emails:
        email = queue_email(
            session,
            template="admin_alert",
            recipient=admin,
            context={"alert_subject": subject, "message": message},
            dedupe_key=f"{dedupe_key}:{admin}",
        )
        if email:
            queued.append(email)
    return queued


class Family(Protocol):
    """Whom a family's email goes to: a `models.people.Payee` (only its address is read)."""

    email: str


def notify(
    session: Session, *, family: Family, template: str, context: dict, dedupe_key: str, admin_subject: str, admin_message: str
) -> None:
    """Email the family (`template` with `context`) and alert the admins, both under `dedupe_key`."""
    queue_email(session, template=template, recipient=family.email, context=context, dedupe_key=dedupe_key)
    queue_admin_alert(session, subject=admin_subject, message=admin_message, dedupe_key=dedupe_key)


def add_dead_letter(session: Session, *, kind: str, payload: dict, error: str) -> DeadLetter:
    """Record a job that failed for good."""
    letter = DeadLetter(kind=kind, payload=payload, error=error[:2000])
    session.add(letter)
    session.flush()
    return letter


def get_dead_letter(session: Session, letter_id: int) -> DeadLetter:
    """A dead letter by id, or NotFound."""
    letter = session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}")
    return letter


def resolve_dead_letter(session: Session, letter: DeadLetter, *, actor: str = "admin") -> DeadLetter:
    """Mark a dead letter handled; Conflict when it already is."""
    if letter.resolved_at is not None:
        raise Conflict(f"dead letter {letter.id} was resolved at {letter.resolved_at:%Y-%m-%d %H:%M}")
    return change_audited(session, letter, actor=actor, action="dead_letter.resolve", resolved_at=utcnow())


def get_email(session: Session, email_id: int) -> EmailLog:
    """An email log row by id, or NotFound."""
    email = session.get(EmailLog, email_id)
    if email is None:
        raise NotFound(f"no email {email_id}")
    return email


# Sending: the worker's side of an EmailLog row ------------------------------------------


def claim_email(session: Session, email_id: int, *, stale_before: datetime | None = None) -> EmailLog | None:
    """Lock a row for sending: `queued` → `sending`, attempts + 1. A `sending` row is taken over
    only when it was left before `stale_before` (its worker died). None when there is nothing
    to send (sent, failed for good, being sent right now, unknown)."""
    email = lock_row(session, EmailLog, email_id)
    if email is None or email.status not in ("queued", "sending"):
        return None
    if email.status == "sending" and (stale_before is None or email.updated_at > stale_before):
        return None
    email.status, email.attempts, email.updated_at = "sending", email.attempts + 1, utcnow()
    session.add(email)
    session.flush()
    return email


def mark_email_sent(session: Session, email: EmailLog, *, subject: str, provider_message_id: str | None) -> EmailLog:
    """The provider accepted the message."""
    email.status, email.subject, email.provider_message_id = "sent", subject[:255], provider_message_id
    email.error, email.sent_at = None, utcnow()
    email.updated_at = email.sent_at
    session.add(email)
    session.flush()
    return email


def mark_email_failed(session: Session, email: EmailLog, *, error: str, final: bool) -> EmailLog:
    """An attempt failed: back to `queued` for a retry, or `failed` for good."""
    email.status, email.error, email.updated_at = ("failed" if final else "queued"), error[:2000], utcnow()
    session.add(email)
    session.flush()
    return email


def requeue_email(session: Session, email: EmailLog, *, actor: str = "admin") -> EmailLog:
    """An admin retries a failed email: `queued` again (the dispatcher sends it after commit)."""
    if email.status == "sent":
        raise Conflict(f"email {email.id} was sent at {email.sent_at:%Y-%m-%d %H:%M}")
    before = {"status": email.status, "error": email.error, "attempts": email.attempts}
    email.status, email.error, email.updated_at = "queued", None, utcnow()
    session.add(email)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="email.requeue",
        entity=email,
        before=before,
        after={"status": email.status, "error": None, "attempts": email.attempts},
    )
    _dispatch_after_commit(session, email.id)
    return email


def stuck_emails(session: Session, *, older_than: datetime) -> list[EmailLog]:
    """Emails never sent: `queued` (dispatch lost) or `sending` (worker died) since before `older_than`."""
    return list(
        session.exec(
            select(EmailLog)
            .where(EmailLog.status.in_(("queued", "sending")), EmailLog.updated_at <= older_than)
            .order_by(EmailLog.id)
        ).all()
    )


def mark_dead_letter_retried(session: Session, letter: DeadLetter, *, actor: str = "admin") -> DeadLetter:
    """Note that an admin replayed a dead letter (it stays open until resolved)."""
    return change_audited(session, letter, actor=actor, action="dead_letter.retry", retried_at=utcnow())


# Read models of the admin's outbox views ------------------------------------------------


def _email_row(email: EmailLog) -> dict:
    return {
        "id": email.id,
        "template": email.template,
        "recipient": email.recipient,
        "status": email.status,
        "attempts": email.attempts,
        "subject": email.subject,
        "provider_message_id": email.provider_message_id,
        "error": email.error,
        "created_at": email.created_at,
        "sent_at": email.sent_at,
    }


def list_emails(session: Session, *, status: str | None = None, limit: int = 50, before_id: int | None = None) -> list[dict]:
    """The newest `limit` emails (of one `status`, when given; older than `before_id`, when given:
    the admin API's pages), newest first, as plain rows."""
    statement = select(EmailLog).order_by(EmailLog.id.desc()).limit(limit)
    if status:
        statement = statement.where(EmailLog.status == status)
    if before_id is not None:
        statement = statement.where(EmailLog.id < before_id)
    return [_email_row(email) for email in session.exec(statement).all()]


def _dead_letter_row(letter: DeadLetter) -> dict:
    return {
        "id": letter.id,
        "kind": letter.kind,
        "payload": dict(letter.payload),
        "error": letter.error,
        "created_at": letter.created_at,
        "retried_at": letter.retried_at,
        "resolved_at": letter.resolved_at,
    }


def list_dead_letters(
    session: Session, *, include_resolved: bool = False, limit: int | None = None, before_id: int | None = None
) -> list[dict]:
    """Dead letters, newest first, as plain rows; only the open ones unless `include_resolved`;
    the newest `limit` older than `before_id` when given (the admin API's pages)."""
    statement = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if not include_resolved:
        statement = statement.where(DeadLetter.resolved_at.is_(None))
    if before_id is not None:
        statement = statement.where(DeadLetter.id < before_id)
    return [_dead_letter_row(letter) for letter in session.exec(statement).all()]


def dead_letter_row(session: Session, *, letter_id: int) -> dict:
    """One dead letter as a plain row (kind, payload, error, times), or NotFound."""
    return _dead_letter_row(get_dead_letter(session, letter_id))
