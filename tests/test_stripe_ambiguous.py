"""Ambiguous Stripe answers: a create whose answer was lost or was a 5xx may have happened.

The pipeline looks the object up by our metadata before creating it again, and creates it
under a new idempotency key (Stripe replays the stored answer of a key, a 500 included);
`Stripe-Should-Retry` decides when Stripe sends it. Faults are injected by the local server
(`tests/support/localstripe_compat.py`), the code under test runs unchanged.
"""

from __future__ import annotations

import logging

import pytest
import stripe

from models.enrollment import Enrollment
from models.people import Payee
from tests.support.booking import add_card, provisional_booking

pytestmark = pytest.mark.slow


def _reload(session, model, row_id):
    session.expire_all()
    return session.get(model, row_id)


def _run_until_done(enrollment_id: int, attempts: int = 4) -> tuple[str, int]:
    """Run the pipeline as Huey's retries would; (outcome, transient failures seen)."""
    from workers.pipeline import run_booking
    from workers.stripe_gateway import TransientStripeError

    failures = 0
    for _ in range(attempts):
        try:
            return run_booking(enrollment_id), failures
        except TransientStripeError:
            failures += 1
    raise AssertionError(f"still failing after {attempts} attempts")


def _posts(stripe_env, path: str) -> int:
    return stripe_env.post_counts().get(path, 0)


def test_subscription_created_but_answered_500_is_found_not_created_twice(session, stripe_env):
    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    before = _posts(stripe_env, "/v1/subscriptions")
    stripe_env.fault("/v1/subscriptions", fail_times=1, after_handler=True, remember=True)

    outcome, failures = _run_until_done(enrollment.id)

    assert (outcome, failures) == ("active", 1)
    enrollment = _reload(session, Enrollment, enrollment.id)
    [subscription] = stripe_env.subscriptions(customer_id)
    assert enrollment.status == "active" and enrollment.stripe_subscription_id == subscription["id"]
    assert _posts(stripe_env, "/v1/subscriptions") - before == 1  # looked up, never re-created
    assert enrollment.stripe_key_generation == 1


def test_a_stored_500_is_not_replayed_forever_the_retry_uses_a_new_key(session, stripe_env):
    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    before = _posts(stripe_env, "/v1/subscriptions")
    # Stripe stored the 500 under the key: the same key would answer 500 on every retry.
    stripe_env.fault("/v1/subscriptions", fail_times=1, remember=True)

    outcome, failures = _run_until_done(enrollment.id)

    assert (outcome, failures) == ("active", 1)
    assert len(stripe_env.subscriptions(customer_id)) == 1
    # One request reached Stripe's work after the stored 500: under a new key (the old one would
    # have been answered the stored 500 again, and the booking would still be failing).
    assert _posts(stripe_env, "/v1/subscriptions") - before == 1
    assert _reload(session, Enrollment, enrollment.id).stripe_key_generation == 1


def test_semester_charge_answered_too_late_is_found_and_not_charged_twice(session, stripe_env, monkeypatch):
    from models.config import reset_settings

    monkeypatch.setenv("STRIPE_TIMEOUT_SECONDS", "0.5")
    reset_settings()
    enrollment, payee, _, _ = provisional_booking(session, frequency="semester")
    customer_id = add_card(stripe_env.client(), payee.id)
    stripe_env.fault("/v1/payment_intents", delay_after=1.5)  # Stripe charges, the answer arrives after our timeout

    outcome, failures = _run_until_done(enrollment.id)
    stripe_env.clear_faults()

    assert (outcome, failures) == ("active", 1)
    intents = [pi for pi in stripe_env.client().v1.payment_intents.list({"customer": customer_id}).data]
    assert len(intents) == 1 and intents[0].status == "succeeded"
    enrollment = _reload(session, Enrollment, enrollment.id)
    assert enrollment.stripe_payment_intent_id == intents[0].id
    # A timeout keeps the key (a retry with it is replayed or told 409): no new generation.
    assert enrollment.stripe_key_generation == 0


def test_customer_created_but_answer_lost_is_found_by_email_and_metadata(session, stripe_env):
    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    stripe_env.fault("/v1/customers", fail_times=1, after_handler=True, remember=True, status=502)

    outcome, failures = _run_until_done(enrollment.id)

    assert (outcome, failures) == ("awaiting_payment_method", 1)
    customers = stripe_env.client().v1.customers.list({"email": payee.email}).data
    assert len(customers) == 1
    assert _reload(session, Payee, payee.id).stripe_customer_id == customers[0].id


def test_stripe_should_retry_false_makes_a_5xx_terminal(session, stripe_env):
    from workers.pipeline import run_booking
    from workers.stripe_gateway import TerminalStripeError

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    add_card(stripe_env.client(), payee.id)
    stripe_env.fault("/v1/subscriptions", fail_times=1, status=500, should_retry=False)
    with pytest.raises(TerminalStripeError):
        run_booking(enrollment.id)


def test_stripe_should_retry_true_makes_a_4xx_transient(session, stripe_env):
    from workers.stripe_gateway import TerminalStripeError, classify

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    add_card(stripe_env.client(), payee.id)
    stripe_env.fault("/v1/subscriptions", fail_times=1, status=400, type="invalid_request_error", should_retry=True)
    outcome, failures = _run_until_done(enrollment.id)
    assert (outcome, failures) == ("active", 1)
    # Without the header the same 400 is terminal.
    assert isinstance(classify(stripe.InvalidRequestError("bad", param=None, http_status=400)), TerminalStripeError)


def test_the_api_version_is_pinned_once_and_is_the_sdks():
    from stripe._api_version import _ApiVersion

    from workers.stripe_gateway import API_VERSION

    assert API_VERSION == _ApiVersion.CURRENT


def test_every_request_names_the_pinned_api_version(session, stripe_env):
    from workers.stripe_gateway import API_VERSION, StripeGateway

    gateway = StripeGateway()
    assert gateway.client._requestor._options.stripe_version == API_VERSION


def test_an_event_in_another_api_version_is_read_and_noted_once(caplog):
    from workers import stripe_gateway
    from workers.stripe_gateway import API_VERSION, note_event_api_version
    from workers.stripe_shapes import invoice_subscription_id

    stripe_gateway._versions_noted.discard("2017-08-15")
    with caplog.at_level(logging.WARNING, logger="workers.stripe_gateway"):
        assert note_event_api_version("2017-08-15") is True
        assert note_event_api_version("2017-08-15") is True
        assert note_event_api_version(API_VERSION) is False
    assert len([r for r in caplog.records if "2017-08-15" in r.getMessage()]) == 1
    # Both shapes of an invoice's subscription are read by the same helper.
    assert invoice_subscription_id({"subscription": "sub_old"}) == "sub_old"
    assert invoice_subscription_id({"parent": {"subscription_details": {"subscription": "sub_new"}}}) == "sub_new"


def test_a_5xx_stripe_says_not_to_retry_fails_the_booking_and_undoes_what_it_may_have_charged(session, stripe_env, task_queue):
    from workers.tasks import book_enrollment

    enrollment, payee, _, _ = provisional_booking(session, frequency="monthly")
    customer_id = add_card(stripe_env.client(), payee.id)
    stripe_env.fault("/v1/subscriptions", fail_times=1, after_handler=True, status=500, should_retry=False)
    book_enrollment(enrollment.id)
    task_queue.run_all()  # the booking fails, then the orphan check it enqueued runs

    assert _reload(session, Enrollment, enrollment.id).status == "failed"
    [subscription] = stripe_env.subscriptions(customer_id)
    assert subscription["status"] == "canceled"  # it had been made (and charged): cancelled
    invoice = stripe_env.client().v1.invoices.retrieve(subscription["latest_invoice"])
    refunds = stripe_env.client().v1.refunds.list({"payment_intent": invoice.payment_intent}).data
    assert [refund.amount for refund in refunds] == [invoice.amount_paid]


def test_payment_setup_after_a_stored_500_looks_first_and_uses_a_new_key(session, stripe_env):
    from workers.payments import PaymentProviderError, create_payment_setup

    _, payee, _, _ = provisional_booking(session, frequency="monthly")
    stripe_env.fault("/v1/customers", fail_times=1, remember=True, status=500)
    with pytest.raises(PaymentProviderError):
        create_payment_setup(payee.id)  # the parent's first try: 502
    setup = create_payment_setup(payee.id)  # the next try is not answered the stored 500 again
    assert setup["client_secret"]
    assert len(stripe_env.client().v1.customers.list({"email": payee.email}).data) == 1
    assert _reload(session, Payee, payee.id).stripe_customer_generation == 1
