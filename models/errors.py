"""The domain error tree. Transports translate it once: problem+json, or a red CLI line.

Each class carries an HTTP status and a stable problem `type` slug; `detail` is the one
human line shown to the admin or the parent, and `field` names the input at fault.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal the domain makes; nothing was changed when it is raised."""

    status = 400
    type = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, type: str | None = None, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if type:
            self.type = type


class NotFound(DomainError):
    """The object does not exist, or belongs to someone else (we never say which)."""

    status = 404
    type = "not-found"
    title = "Not found"


class Conflict(DomainError):
    """The request clashes with the current state (slot taken, duplicate email...)."""

    status = 409
    type = "conflict"
    title = "Conflict"


class SlotTaken(Conflict):
    """Someone else holds the slot (or slot-date) already."""

    type = "slot-taken"
    title = "Slot taken"


class Invalid(DomainError):
    """Well-formed input that breaks a domain rule (not an occurrence, reversed range...)."""

    status = 422
    type = "invalid"
    title = "Invalid input"


class Forbidden(DomainError):
    """The caller may not do this."""

    status = 403
    type = "forbidden"
    title = "Forbidden"


class Unauthorized(DomainError):
    """No valid credentials."""

    status = 401
    type = "unauthorized"
    title = "Unauthorized"


class TooManyHolds(Conflict):
    """The payee already has the maximum number of provisional holds."""

    type = "too-many-holds"
    title = "Too many provisional holds"


class TooManyStudents(Conflict):
    """The family already has the maximum number of (non-archived) students."""

    type = "too-many-students"
    title = "Too many students"


class CardRequired(Conflict):
    """A family without a card on file may hold one slot, and only while few such holds exist."""

    type = "card-required"
    title = "A card on file is required"


class AlreadyMarked(Conflict):
    """The lesson already carries another attendance mark (the admin's `present`, `teacher_cancelled`...)."""

    type = "already-marked"
    title = "Lesson already marked"
