"""Every request the Stripe connectors make, sent to stripe-mock, which validates it
against Stripe's OpenAPI description: a parameter Stripe does not know, a missing one or
a wrong type is refused there and fails the test. stripe-mock keeps no state and answers
with fixtures, so these tests judge each request's shape and that the answer parses;
the flows run against the sandbox's Stripe mode (test_sandbox_stripe_mode.py, e2e).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from invoice_sync.adapters.stripe_registrations import StripeRegistrations
from invoice_sync.domain.registration import Accepted, Refused, RegistrationRequest, WithdrawalRequest
from payment_intake.adapters.stripe_checkouts import SESSION_SHORTEST, StripeCheckouts
from payment_intake.domain.payment import Payment, PaymentStatus
from payment_intake.domain.provider import ClaimedCheckout, ProviderRefused
from payment_intake.domain.refunds import Refund
from payments_platform.provider_credentials import (
    SANDBOX_STRIPE_SECRET_KEY,
    SANDBOX_STRIPE_WEBHOOK_SECRET,
    StripeCredentials,
    StripeMerchant,
)
from payments_platform.stripe_support import StripeRefused, calling_stripe

pytestmark = pytest.mark.integration

MERCHANT = StripeMerchant(
    "acme",
    StripeCredentials(SANDBOX_STRIPE_SECRET_KEY, (SANDBOX_STRIPE_WEBHOOK_SECRET,)),
    "https://portal.acme.example/invoices",
)
CONNECTED = StripeMerchant(
    "acme-connect",
    StripeCredentials(SANDBOX_STRIPE_SECRET_KEY, (SANDBOX_STRIPE_WEBHOOK_SECRET,), "acct_1Demo"),
    "https://portal.acme.example/invoices?tab=open",
)


def payment(
    allocations: tuple[tuple[str, int], ...],
    *,
    method: str = "guest_checkout",
    scope: str = "invoice",
    currency: str = "USD",
    account: str = "C-10042",
) -> Payment:
    now = datetime.now(UTC)
    return Payment(
        payment_id=uuid.uuid4(),
        account_id=account,
        idempotency_key="key-1",
        status=PaymentStatus.REQUESTED,
        currency=currency,
        total_minor=sum(a for _, a in allocations),
        method=method,
        scope=scope,
        command_event_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        checkout_id=None,
        expires_at=now + timedelta(minutes=15),
        open_attempts=0,
        allocations=allocations,
    )


def refund(reason: str, *, provider_refund_id: str | None = None) -> Refund:
    return Refund(
        refund_id=uuid.uuid4(),
        payment_id=uuid.uuid4(),
        account_id="C-10042",
        amount_minor=125_000,
        currency="USD",
        reason_code=reason,
        requested_by="policy",
        status="requested" if provider_refund_id is None else "submitted",
        provider_refund_id=provider_refund_id,
        attempts=0,
        checkout_id="cs_test_a1",
        updated_at=datetime.now(UTC),
    )


@pytest.fixture
async def checkouts(stripe_mock: str):
    connector = StripeCheckouts(MERCHANT, api_base=stripe_mock, attempts=1)
    yield connector
    await connector.close()


async def test_seed_000_guest_checkout_is_a_session_with_the_invoice_and_amount_fixed(checkouts):
    paying = payment((("INV-1001", 125_000),))
    params = checkouts.session_params(paying, customer=None, now=datetime.now(UTC))
    assert params["line_items"] == [
        {
            "quantity": 1,
            "price_data": {
                "currency": "usd",
                "unit_amount": 125_000,
                "product_data": {"name": "Invoice INV-1001"},
            },
        }
    ]
    assert params["metadata"]["payment_id"] == str(paying.payment_id)
    assert params["client_reference_id"] == str(paying.payment_id)
    # Stripe's shortest session is 30 minutes; our 15-minute checkout ends by our own timer.
    assert params["expires_at"] >= int((datetime.now(UTC) + SESSION_SHORTEST).timestamp()) - 2
    opened = await checkouts.open_checkout(paying)
    assert opened.checkout_id.startswith("cs_")
    assert opened.url.startswith("https://")


async def test_seed_000_payer_portal_pays_the_account_balance_on_the_accounts_customer(checkouts):
    paying = payment(
        (("INV-1001", 125_000), ("INV-1002", 31_040)), method="payer_portal", scope="account_balance"
    )
    opened = await checkouts.open_checkout(paying)  # customers.search, then the session
    assert opened.checkout_id.startswith("cs_")
    params = checkouts.session_params(paying, customer="cus_1", now=datetime.now(UTC))
    assert params["customer"] == "cus_1"
    assert [i["price_data"]["unit_amount"] for i in params["line_items"]] == [125_000, 31_040]


async def test_seed_003_partial_payment_and_several_invoices_in_one_session(checkouts):
    partial = payment((("INV-2101", 50_000),), method="card")
    assert (await checkouts.open_checkout(partial)).checkout_id.startswith("cs_")
    several = payment((("INV-2101", 98_000), ("INV-2102", 70_000)), method="card", scope="selected_invoices")
    assert (await checkouts.open_checkout(several)).checkout_id.startswith("cs_")
    params = checkouts.session_params(several, customer=None, now=datetime.now(UTC))
    assert params["metadata"]["invoice_numbers"] == "INV-2101 INV-2102"


async def test_a_zero_decimal_and_a_three_decimal_currency_in_stripes_units(checkouts):
    yen = payment((("INV-J1", 125_000),), currency="JPY")
    assert (
        checkouts.session_params(yen, customer=None, now=datetime.now(UTC))["line_items"][0]["price_data"][
            "unit_amount"
        ]
        == 125_000
    )
    assert (await checkouts.open_checkout(yen)).checkout_id.startswith("cs_")
    odd_dinar = payment((("INV-K1", 1_005),), currency="KWD")  # Stripe wants the last digit 0
    with pytest.raises(ProviderRefused) as refused:
        await checkouts.open_checkout(odd_dinar)
    assert refused.value.code == "amount_not_representable"


async def test_status_sync_cancel_refunds_and_refund_sync(checkouts):
    claimed = ClaimedCheckout(uuid.uuid4(), "C-10042", "cs_test_a1", datetime.now(UTC), 1)
    state = await checkouts.checkout_state(claimed)  # retrieve, payment_intent expanded
    assert state.checkout_id.startswith("cs_")
    assert state.status in ("open", "processing", "succeeded", "expired", "failed")
    cancelled = await checkouts.cancel_checkout(claimed)  # stripe-mock's session is open: expire
    assert cancelled.checkout_id.startswith("cs_")
    for reason in ("double_payment", "late_payment", "amount_mismatch"):
        answer = await checkouts.refund(refund(reason))  # on the session's payment intent
        assert answer.provider_refund_id is not None and answer.provider_refund_id.startswith("re_")
        assert answer.status in ("pending", "succeeded", "failed")
    synced = await checkouts.refund_state(refund("double_payment", provider_refund_id="re_123"))
    assert synced.provider_refund_id is not None


async def test_connect_merchants_requests_carry_their_account(stripe_mock: str):
    connector = StripeCheckouts(CONNECTED, api_base=stripe_mock, attempts=1)
    try:
        opened = await connector.open_checkout(payment((("INV-1001", 125_000),)))
        assert opened.checkout_id.startswith("cs_")
    finally:
        await connector.close()


async def test_stripe_mock_refuses_a_request_stripe_would_refuse(checkouts):
    """The judge can say no: a parameter Stripe does not know is refused, and the
    connector reports it as the provider refusing, not as an outage."""
    with pytest.raises(StripeRefused, match="additional properties are not allowed"):
        await calling_stripe(
            lambda: checkouts.client.v1.checkout.sessions.create_async(
                params={"mode": "payment", "invoice_number": "INV-1001"},  # type: ignore[typeddict-unknown-key]
            ),
            attempts=1,
        )


async def test_invoice_sync_registers_at_stripe_by_the_accounts_customer(stripe_mock: str):
    connector = StripeRegistrations(MERCHANT, api_base=stripe_mock)
    try:
        outcomes = await connector.register(
            [
                RegistrationRequest("C-10042", "INV-1001", 125_000, "USD"),
                RegistrationRequest("C-10042", "INV-1002", 31_040, "USD"),
                RegistrationRequest("C-10042", "INV-K1", 1_005, "KWD"),
            ]
        )
        assert isinstance(outcomes[0], Accepted) and outcomes[0].provider_invoice_id.startswith("cus_")
        assert outcomes[1] == outcomes[0]  # one customer per account, asked for once
        assert isinstance(outcomes[2], Refused) and outcomes[2].code == "amount_not_representable"
        created = await connector.customers.create("C-20077")  # the path when search finds none
        assert created.startswith("cus_")
        assert await connector.withdraw([WithdrawalRequest("C-10042", "INV-1001")]) == [Accepted("")]
    finally:
        await connector.aclose()
