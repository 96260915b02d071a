"""Every error of the API as `application/problem+json` (RFC 9457), translated in one place.

`type` is a stable slug (`slot-taken`, `not-found`, `validation-error`...), a relative URI
reference clients can switch on; `title` is fixed per type; `detail` is the human line.
Domain errors keep their status; HTTP errors (404, 405 with `Allow`, 413, 429 with
`Retry-After`) keep theirs; validation errors are 422 and name every field at fault;
a database that cannot be reached is 503; anything else is a logged 500 that leaks nothing.
"""

from __future__ import annotations

import logging

import sqlalchemy.exc
from flask import Flask, Response, g, json, request
from flask_limiter import RateLimitExceeded
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from models.db import NOT_MIGRATED, NotMigrated, is_not_migrated
from models.errors import DomainError
from webapi.rate_limits import retry_after

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def problem(status: int, type: str, title: str, detail: str | None = None, *, headers=None, **extra) -> Response:
    """A problem+json response, with the request's `request_id` (its X-Request-ID)."""
    body = {"type": type, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    body.update({key: value for key, value in extra.items() if value is not None})
    if g.get("request_id"):
        body["request_id"] = g.request_id
    g.problem_type = type
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _slug(name: str) -> str:
    return "-".join(name.lower().replace("'", "").split())


def _field_name(location: tuple) -> str:
    return ".".join(str(part) for part in location) or "body"


def validation_problem(error: ValidationError, where: str | None = None) -> Response:
    """422 naming every field at fault (`errors[].field` and the `detail` line)."""
    errors = []
    for item in error.errors(include_url=False, include_input=False):
        location = tuple(item.get("loc", ()))
        errors.append({"field": _field_name(location), "message": item.get("msg", "invalid")})
    fields = ", ".join(dict.fromkeys(entry["field"] for entry in errors)) or "body"
    return problem(422, "validation-error", "Invalid request", f"invalid or missing: {fields}", errors=errors, where=where)


def flask_openapi3_validation_callback(error: ValidationError) -> Response:
    """flask-openapi3's hook: request validation failures become 422 problems."""
    return validation_problem(error)


def register_error_handlers(app: Flask) -> None:
    """Install the problem+json translation for every error the app can meet."""

    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        headers = {"WWW-Authenticate": 'Bearer realm="studio"'} if error.status == 401 else None
        return problem(error.status, error.type, error.title, error.detail, field=error.field, headers=headers)

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError):
        return validation_problem(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        # flask-openapi3 aborts with a ready response (our 422 problem): pass it through.
        if error.response is not None and error.response.mimetype == PROBLEM_JSON:
            return error.response
        original = error.get_response()
        headers = {name: original.headers[name] for name in _KEPT_HEADERS if name in original.headers}
        status = error.code or 500
        title = error.name or "Error"
        detail = error.description if status != 429 else f"rate limit exceeded ({error.description})"
        if isinstance(error, RateLimitExceeded):
            headers["Retry-After"] = str(retry_after(error))
        return problem(status, _slug(title), title, detail, headers=headers)

    @app.errorhandler(sqlalchemy.exc.DataError)
    def _data(error: sqlalchemy.exc.DataError):
        # A value the database refuses (out of range, NUL byte...): the client's mistake.
        log.info("database refused a value: %s", error.orig)
        return problem(422, "invalid-value", "Invalid value", "a value in the request is out of range or malformed")

    @app.errorhandler(NotMigrated)
    def _not_migrated(_error: Exception | None = None):
        # The database layer's check (no schema, another revision, no SQLite file) or a table
        # missing mid-run: the parent learns it is temporary, the operator reads the log.
        log.error(NOT_MIGRATED)
        return problem(
            503, NotMigrated.type, NotMigrated.title, "the database is not migrated yet", headers={"Retry-After": "30"}
        )

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    @app.errorhandler(sqlalchemy.exc.InterfaceError)
    def _database_down(error: Exception):
        if is_not_migrated(error):
            return _not_migrated()
        log.error("database unavailable: %s", error)
        return problem(
            503,
            "service-unavailable",
            "Service unavailable",
            "the database is unreachable; retry later",
            headers={"Retry-After": "5"},
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, sqlalchemy.exc.ProgrammingError) and is_not_migrated(error):
            return _not_migrated()
        if isinstance(error, HTTPException):
            return _http(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal-error", "Internal server error", "something went wrong on our side")
