"""`Idempotency-Key` for POSTs that create things: the first answer is stored with the work.

The record is written in the same transaction as the booking it answers for, so either
both exist or neither does. The caller locks the payee's row first
(`models.family.payee_for_user(..., lock=True)`: FOR UPDATE on PostgreSQL; SQLite's write
transaction began IMMEDIATE), so two concurrent requests with one key run
one after the other and the second finds the first's record. Only successful answers are
stored: a refused request changed nothing, and its retry is simply judged again. A key
reused with a different body is refused (422, `idempotency-key-reused`), never replayed.
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from sqlmodel import Session, select

from models.errors import Invalid
from models.outbox import IdempotencyRecord


class IdempotencyRace(Exception):
    """Another transaction stored the same key first (the caller re-reads and replays it)."""


def fingerprint(payload: dict) -> str:
    """A stable hash of a request body (key order does not matter)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_response(session: Session, *, payee_id: int, key: str, request_fingerprint: str) -> IdempotencyRecord | None:
    """The stored answer for `key`, or None; Invalid when the key came with another body."""
    record = session.exec(
        select(IdempotencyRecord).where(IdempotencyRecord.payee_id == payee_id, IdempotencyRecord.key == key)
    ).first()
    if record is not None and record.fingerprint != request_fingerprint:
        raise Invalid(
            "this Idempotency-Key was used with a different request body; use a new key",
            type="idempotency-key-reused",
            field="Idempotency-Key",
        )
    return record


def store_response(
    session: Session, *, payee_id: int, key: str, request_fingerprint: str, status: int, body: dict
) -> IdempotencyRecord:
    """Remember the answer for `key` in the caller's transaction; IdempotencyRace on a clash."""
    record = IdempotencyRecord(
        payee_id=payee_id, key=key, fingerprint=request_fingerprint, response_status=status, response_body=body
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except sa.exc.IntegrityError:
        raise IdempotencyRace(key) from None
    return record
