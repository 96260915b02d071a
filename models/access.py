"""How a family gets in: its calendar subscription token.

The calendar token is a bearer secret in a URL that calendar apps poll for years; a family
that shared or leaked it rotates it, and the old URL stops answering at once.
"""

from __future__ import annotations

import secrets

from sqlmodel import Session

from models.audit import change_audited
from models.base import utcnow
from models.people import Payee


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
