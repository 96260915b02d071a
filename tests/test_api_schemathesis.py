"""Schemathesis over /openapi.json with a valid token: no generated request may cause a 5xx.

Bounded: at most 20 examples per operation, a fixed seed, no shrinking deadline. Runs on
each engine inside the test's rolled-back transaction (the app under WSGI, no network).
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck

from tests import factories
from tests.support.api import bearer, make_app

SUB, EMAIL = "fuzz-user", "fuzz@family.test"
MAX_EXAMPLES = 20
PHASES = [hypothesis.Phase.explicit, hypothesis.Phase.generate]  # no shrinking: a failure is reported as found


@pytest.fixture
def fuzz_app(db, session, stripe_env):
    """An app with a registered family, a student, slots and a plan, so requests can succeed
    (payment setup talks to localstripe)."""
    payee = factories.payee(session, email=EMAIL, supabase_user_id=SUB)
    factories.student(session, payee_row=payee)
    teacher = factories.teacher(session, instruments=("piano", "guitar"))
    for weekday in range(3):
        factories.timeslot(session, teacher_row=teacher, weekday=weekday, start="16:00")
    factories.plan(session)
    session.commit()
    return make_app()


def test_no_server_errors(fuzz_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    headers = bearer(SUB, EMAIL)
    server_errors: list[str] = []
    cases: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16

    def run(operation) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=PHASES,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case):
            # /auth/* gets no token: schemathesis' random bearer strings exercise the refusals there.
            response = case.call(headers={} if case.path.startswith("/auth/") else headers)
            cases[label] = cases.get(label, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{label} -> {response.status_code}: {response.text[:300]}")
            else:
                not_a_server_error_ok(response)

        exercise()

    for operation in operations:
        run(operation)

    total = sum(cases.values())
    print(f"schemathesis: {total} cases over {len(cases)} operations, {len(server_errors)} server errors")
    assert server_errors == []
    assert len(cases) == len(operations) and total >= 10 * len(operations)


def not_a_server_error_ok(response) -> None:
    """Every answer is JSON or iCalendar, and errors are problem+json."""
    values = {name.lower(): value for name, value in response.headers.items()}.get("content-type", "")
    content_type = values[0] if isinstance(values, list) else values
    if response.status_code >= 400:
        assert content_type.startswith("application/problem+json"), (response.status_code, content_type)
    elif response.status_code != 204:
        assert content_type.startswith(("application/json", "text/calendar")), content_type
