"""Payment-method setup for the parent app: `POST /parent/payment-setup` calls this.

The parent's browser confirms the SetupIntent with Stripe.js; Stripe then sends
`setup_intent.succeeded`, which makes the card the customer's default and resumes any
booking waiting for it (the reconciliation job does the same if the event is lost).
"""

from __future__ import annotations

from models import billing
from models.db import session_scope
from models.errors import DomainError, NotFound
from models.people import Payee
from workers.billing_setup import ensure_customer
from workers.pipeline_steps import payee_key
from workers.stripe_gateway import StripeGateway, StripeGatewayError, StripeNotConfigured


class PaymentProviderError(DomainError):
    """Stripe could not be reached or refused the request (the API answers 502)."""

    status = 502
    type = "payment-provider-error"
    title = "Payment provider error"


def create_payment_setup(payee_id: int) -> dict:
    """A SetupIntent for the payee's Stripe customer (the customer created once, idempotently): the
    customer's open one when there is one, else a new one. `{"client_secret", "customer_id", "setup_intent_id"}`."""
    with session_scope(write=False) as session:
        payee = session.get(Payee, payee_id)
        if payee is None:
            raise NotFound(f"no payee {payee_id}")
        email, name, customer_id = payee.email, payee.name, payee.stripe_customer_id
        key = payee_key(payee)
    try:
        gateway = StripeGateway()
        try:
            # Looked up first: an earlier request may have made it and lost the answer.
            customer_id = ensure_customer(
                gateway, payee_id=payee_id, email=email, name=name, customer_id=customer_id, key=key, look_first=True
            )
        except StripeGatewayError as error:
            if error.key_spent:  # the parent's next try must not be answered the stored 500 again
                with session_scope() as session:
                    billing.spend_customer_key(session, payee_id)
            raise
        # An open one is reused: a parent (or a script) asking again gets the same client secret.
        intent = gateway.open_setup_intent(customer_id=customer_id, payee_id=payee_id) or gateway.create_setup_intent(
            customer_id=customer_id, payee_id=payee_id
        )
    except StripeNotConfigured as error:
        raise PaymentProviderError(str(error), type="payments-unavailable") from None
    except StripeGatewayError as error:
        raise PaymentProviderError(f"Stripe: {error}") from None
    return {"client_secret": intent["client_secret"], "customer_id": customer_id, "setup_intent_id": intent["id"]}
