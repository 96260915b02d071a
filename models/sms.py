"""Text messages: SmsLog rows first, sent after commit, exactly like the email outbox.

A message is written as a `queued` SmsLog row inside the caller's transaction, under a dedupe
key unique in the database (a reminder's: `reminder:<kind>-<id>:<date>:sms`); after commit the
dispatcher the workers register enqueues the send task, which claims the row (`queued` →
`sending`, attempts + 1) and marks it `sent` with the provider's sid, back to `queued` on a
transient error, or `failed` for good (dead letter and admin alert). Every attempt after the
first looks the message up at the provider before sending (see `workers/sms_gateway.py`).
Phone numbers are stored in E.164 (`normalize_phone`).
"""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from sqlmodel import Field, Session, SQLModel, col, select

from models.audit import record_audit
from models.base import enum_check, json_column, utc_column, utcnow
from models.db import after_commit, lock_row
from models.dispatch import sms_dispatcher
from models.errors import Conflict, Invalid, NotFound

SMS_STATUSES = ("queued", "sending", "sent", "failed")
SMS_TEMPLATES = ("lesson_reminder", "waitlist_offer", "makeup_slots_available")
DEFAULT_REGION = "US"  # a number written without +country code is read as this region's


class SmsLog(SQLModel, table=True):
    """One text message: its template, context, and every attempt's outcome."""

    __tablename__ = "sms_log"
    __table_args__ = (enum_check("status", SMS_STATUSES, "status_known"),)

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(max_length=20, index=True)  # E.164
    template: str = Field(max_length=40)
    context: dict = Field(default_factory=dict, sa_column=json_column(nullable=False))
    body: str | None = Field(default=None, max_length=640)  # as rendered by the last attempt
    status: str = Field(default="queued", max_length=16, index=True)
    attempts: int = Field(default=0)
    provider_sid: str | None = Field(default=None, max_length=64)
    provider_status: str | None = Field(default=None, max_length=32)
    error: str | None = None
    dedupe_key: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column())


def normalize_phone(raw: str, *, region: str = DEFAULT_REGION) -> str:
    """A phone number in E.164 (`+15551234567`); Invalid (field `phone`) when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        raise Invalid(f"{raw!r} is not a phone number", field="phone") from None
    if not phonenumbers.is_valid_number(number):
        raise Invalid(f"{raw!r} is not a valid phone number", field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _dispatch_after_commit(session: Session, sms_id: int) -> None:
    dispatcher = sms_dispatcher()
    if dispatcher is not None:
        after_commit(session, lambda: dispatcher(sms_id))


def queue_sms(session: Session, *, template: str, recipient: str, context: dict, dedupe_key: str) -> SmsLog | None:
    """Queue a text message in the caller's transaction; None when `dedupe_key` was queued before."""
    if template not in SMS_TEMPLATES:
        raise ValueError(f"unknown SMS template {template!r}")
    if session.exec(select(SmsLog.id).where(col(SmsLog.dedupe_key) == dedupe_key)).first() is not None:
        return None
    sms = SmsLog(recipient=recipient, template=template, context=context, dedupe_key=dedupe_key)
    session.add(sms)
    session.flush()
    assert sms.id is not None
    _dispatch_after_commit(session, sms.id)
    return sms


def get_sms(session: Session, sms_id: int) -> SmsLog:
    """An SmsLog row by id, or NotFound."""
    sms = session.get(SmsLog, sms_id)
    if sms is None:
        raise NotFound(f"no SMS {sms_id}")
    return sms


def claim_sms(session: Session, sms_id: int, *, stale_before: datetime | None = None) -> SmsLog | None:
    """Lock a row for sending: `queued` → `sending`, attempts + 1; a `sending` row only when left
    before `stale_before`. None when there is nothing to send."""
    sms = lock_row(session, SmsLog, sms_id)
    if sms is None or sms.status not in ("queued", "sending"):
        return None
    if sms.status == "sending" and (stale_before is None or sms.updated_at > stale_before):
        return None
    sms.status, sms.attempts, sms.updated_at = "sending", sms.attempts + 1, utcnow()
    session.add(sms)
    session.flush()
    return sms


def mark_sms_sent(session: Session, sms: SmsLog, *, provider_sid: str, provider_status: str | None, body: str) -> SmsLog:
    """The provider accepted the message."""
    sms.status, sms.provider_sid, sms.provider_status, sms.body = "sent", provider_sid[:64], (provider_status or "")[:32], body
    sms.error, sms.sent_at = None, utcnow()
    sms.updated_at = sms.sent_at
    session.add(sms)
    session.flush()
    return sms


def mark_sms_failed(session: Session, sms: SmsLog, *, error: str, final: bool) -> SmsLog:
    """An attempt failed: back to `queued` for a retry, or `failed` for good."""
    sms.status, sms.error, sms.updated_at = ("failed" if final else "queued"), error[:2000], utcnow()
    session.add(sms)
    session.flush()
    return sms


def requeue_sms(session: Session, sms: SmsLog, *, actor: str = "admin") -> SmsLog:
    """An admin retries a failed text: `queued` again (sent after commit); Conflict when it was sent."""
    if sms.status == "sent":
        raise Conflict(f"SMS {sms.id} was sent at {sms.sent_at:%Y-%m-%d %H:%M}")
    before = {"status": sms.status, "error": sms.error, "attempts": sms.attempts}
    sms.status, sms.error, sms.updated_at = "queued", None, utcnow()
    session.add(sms)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="sms.requeue",
        entity=sms,
        before=before,
        after={"status": sms.status, "error": None, "attempts": sms.attempts},
    )
    assert sms.id is not None
    _dispatch_after_commit(session, sms.id)
    return sms


def stuck_sms(session: Session, *, older_than: datetime) -> list[int]:
    """Ids of texts never sent (`queued` or `sending`) since before `older_than`."""
    return list(
        session.exec(
            select(SmsLog.id)
            .where(col(SmsLog.status).in_(("queued", "sending")), col(SmsLog.updated_at) <= older_than)
            .order_by(col(SmsLog.id))
        ).all()
    )


def list_sms(session: Session, *, status: str | None = None, limit: int = 50) -> list[dict]:
    """The newest `limit` texts (of one `status`, when given), newest first, as plain rows."""
    statement = select(SmsLog).order_by(col(SmsLog.id).desc()).limit(limit)
    if status:
        statement = statement.where(col(SmsLog.status) == status)
    return [
        {
            "id": sms.id,
            "template": sms.template,
            "recipient": sms.recipient,
            "status": sms.status,
            "attempts": sms.attempts,
            "provider_sid": sms.provider_sid,
            "error": sms.error,
            "created_at": sms.created_at,
            "sent_at": sms.sent_at,
        }
        for sms in session.exec(statement).all()
    ]
