"""How a family gets in: its sign-in linked to its payee, the admin's invites, its calendar token.

A parent's first `PUT /parent/payee` either creates their payee or claims the one the studio
made for them. Claiming by email alone would hand the family's students, bookings and calendar
to anyone holding a token for that address, so it needs proof:
- the sign-in's email is verified (the token says so; `Identity.email_verified`), or
- a one-time invite code from `studioctl payees invite`, valid 7 days and once; only its
  SHA-256 is stored. A new invite for the payee revokes the ones still open.
Otherwise the answer is `LinkRequired` (409 `link-required`) and nothing is written.
The payee's email follows the sign-in's only when that email is verified.

The calendar token is a bearer secret in a URL that calendar apps poll for years; a family
that shared or leaked it rotates it, and the old URL stops answering at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.audit import change_audited, record_audit, snapshot
from models.base import utc_column, utcnow
from models.errors import Conflict, DomainError
from models.people import Payee, normalise_email

INVITE_DAYS = 7


class LinkRequired(Conflict):
    """The studio has a payee with this email, but the sign-in has not proved it owns the address."""

    type = "link-required"
    title = "Link required"


class InviteRefused(DomainError):
    """The invite code is unknown, revoked, expired or used: it links nothing."""

    status = 403
    type = "invite-invalid"
    title = "Invite code refused"


class PayeeInvite(SQLModel, table=True):
    """A one-time code the admin hands a family so its sign-in can claim the payee the studio made."""

    __tablename__ = "payee_invite"

    id: int | None = Field(default=None, primary_key=True)
    payee_id: int = Field(foreign_key="payee.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})  # SHA-256 hex of the code
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    expires_at: datetime = Field(sa_column=utc_column(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=utc_column())
    used_by: str | None = Field(default=None, max_length=255)  # the Supabase user that claimed the payee
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column())


def hash_invite_code(code: str) -> str:
    """What is stored of an invite code (a 192-bit random code needs no slow hash)."""
    return hashlib.sha256(code.strip().encode()).hexdigest()


def create_invite(session: Session, payee: Payee, *, actor: str) -> tuple[PayeeInvite, str]:
    """A new invite for a payee no sign-in claimed yet, and its code (shown once, never stored).

    Invites of the payee still open are revoked: only the newest code works.
    """
    if payee.supabase_user_id is not None:
        raise Conflict(f"payee {payee.id} is linked to a sign-in already", type="already-linked")
    now = utcnow()
    open_invites = session.exec(
        select(PayeeInvite).where(
            PayeeInvite.payee_id == payee.id, PayeeInvite.used_at.is_(None), PayeeInvite.revoked_at.is_(None)
        )
    ).all()
    for old in open_invites:
        old.revoked_at = now
        session.add(old)
    code = secrets.token_urlsafe(24)
    invite = PayeeInvite(
        payee_id=payee.id, code_hash=hash_invite_code(code), created_at=now, expires_at=now + timedelta(days=INVITE_DAYS)
    )
    session.add(invite)
    session.flush()
    after = {**snapshot(invite), "revoked_invite_ids": [old.id for old in open_invites]}
    record_audit(session, actor=actor, action="payee.invite", entity=invite, after=after)
    return invite, code


def register_sign_in(
    session: Session,
    *,
    supabase_user_id: str,
    email: str,
    email_verified: bool,
    name: str | None = None,
    phone: str | None = None,
    invite_code: str | None = None,
) -> Payee:
    """The payee of the sign-in `supabase_user_id`: found, claimed (verified email or invite),
    or created; its name and phone updated (idempotent). Audited as `payee:<id>`."""
    email = normalise_email(email)
    payee = session.exec(select(Payee).where(Payee.supabase_user_id == supabase_user_id)).first()
    linked_by: dict | None = None
    if invite_code is not None:
        payee, linked_by = _redeem(session, invite_code, supabase_user_id=supabase_user_id, own=payee)
    elif payee is None:
        waiting = session.exec(select(Payee).where(Payee.email == email)).first()
        if waiting is None:
            return _sign_up(session, supabase_user_id=supabase_user_id, email=email, name=name, phone=phone)
        if waiting.supabase_user_id is not None:
            raise Conflict(f"{email} belongs to another sign-in")
        if not email_verified:
            raise LinkRequired(
                f"the studio has a family record for {email}: verify your email address, or ask the studio "
                'for an invite code and send it as {"invite_code": ...}'
            )
        payee, linked_by = _lock_unlinked(session, waiting.id), {"linked_by": "verified-email"}
    before = snapshot(payee)
    if linked_by is not None:
        payee.supabase_user_id = supabase_user_id
    if email_verified and payee.email != email:
        if session.exec(select(Payee).where(Payee.email == email, Payee.id != payee.id)).first():
            raise Conflict(f"{email} belongs to another payee")
        payee.email = email
    if name is not None and name.strip():
        payee.name = name.strip()
    if phone is not None:
        payee.phone = phone or None
    if snapshot(payee) == before:
        return payee
    payee.updated_at = utcnow()
    session.add(payee)
    session.flush()
    action, after = ("payee.link", {**snapshot(payee), **linked_by}) if linked_by else ("payee.update", snapshot(payee))
    record_audit(session, actor=f"payee:{payee.id}", action=action, entity=payee, before=before, after=after)
    return payee


def _sign_up(session: Session, *, supabase_user_id: str, email: str, name: str | None, phone: str | None) -> Payee:
    payee = Payee(supabase_user_id=supabase_user_id, email=email, name=(name or email.split("@")[0]).strip(), phone=phone)
    session.add(payee)
    session.flush()
    record_audit(session, actor=f"payee:{payee.id}", action="payee.signup", entity=payee, after=snapshot(payee))
    return payee


def _lock_unlinked(session: Session, payee_id: int) -> Payee:
    """The payee, read afresh and locked (PostgreSQL; SQLite's write transaction already is),
    still claimed by no sign-in: of two sign-ins claiming it at once, the second is refused."""
    payee = session.exec(
        select(Payee).where(Payee.id == payee_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    if payee.supabase_user_id is not None:
        raise Conflict("this family is linked to another sign-in already", type="already-linked")
    return payee


def _redeem(session: Session, code: str, *, supabase_user_id: str, own: Payee | None) -> tuple[Payee, dict | None]:
    """The payee an invite code claims for `supabase_user_id` (the code is used up), with how it
    was linked; a retry of the same claim finds the payee linked and changes nothing."""
    invite = session.exec(select(PayeeInvite).where(PayeeInvite.code_hash == hash_invite_code(code))).first()
    if invite is None or invite.revoked_at is not None:
        raise InviteRefused("this invite code is not valid: ask the studio for a new one")
    if invite.used_at is not None:
        if own is not None and own.id == invite.payee_id and invite.used_by == supabase_user_id:
            return own, None  # the app retried the claim that worked
        raise InviteRefused("this invite code was used already: ask the studio for a new one", type="invite-used")
    if invite.expires_at <= utcnow():
        raise InviteRefused(
            f"this invite code expired on {invite.expires_at:%Y-%m-%d}: ask the studio for a new one", type="invite-expired"
        )
    if own is not None:
        raise Conflict("this sign-in has its own family record already: ask the studio to merge them", type="already-linked")
    payee = _lock_unlinked(session, invite.payee_id)
    claimed = session.execute(
        sa.update(PayeeInvite)
        .where(PayeeInvite.id == invite.id, PayeeInvite.used_at.is_(None))
        .values(used_at=utcnow(), used_by=supabase_user_id)
    )
    if claimed.rowcount != 1:  # claimed by a concurrent request a moment ago
        raise InviteRefused("this invite code was used already: ask the studio for a new one", type="invite-used")
    return payee, {"linked_by": "invite", "invite_id": invite.id}


def new_calendar_token() -> str:
    """A fresh calendar subscription token (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def rotate_calendar_token(session: Session, payee: Payee, *, actor: str) -> Payee:
    """Give the payee a new calendar token; the old one no longer finds the family (audited,
    the token itself redacted)."""
    token = new_calendar_token()
    return change_audited(
        session, payee, actor=actor, action="payee.rotate_calendar_token", calendar_token=token, updated_at=utcnow()
    )
