"""The portal client's own tests: commands as the contracts define them, and outcomes
matched to the commands waiting for them. They import only the client and the published
language, so they also run in a clean virtualenv with nothing but the two wheels installed
(tests/packaging/test_client_wheels.py)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from payments_contracts.money import Money
from payments_contracts.payments import (
    Allocation,
    BillingAddress,
    CheckoutOpened,
    CheckoutOpenedPayload,
    PaymentEndedPayload,
    PaymentFailed,
    PaymentRejected,
    PaymentRejectedPayload,
    PaymentRequested,
    PaymentRequestedPayload,
)
from payments_portal_client import (
    Accepted,
    Correlator,
    Ended,
    GuestCheckout,
    NotFound,
    PayerPortal,
    ReadModelClient,
    ReadModelError,
    Rejected,
    RemittanceDetails,
    Unauthorized,
    Unavailable,
)
from payments_portal_client import commands as build

USD = "USD"


def guest() -> GuestCheckout:
    return GuestCheckout(
        billing_address=BillingAddress(
            email="ap@example.com",
            street="1 Main St",
            country="US",
            postal_code="10001",
            phone_country_code="+1",
            phone_number="2125550100",
        ),
        name_on_card="Pat Payer",
    )


def requested(command: build.Command, *, repeat_of: uuid.UUID | None = None) -> PaymentRequested:
    return PaymentRequested.following(
        command,
        producer="payment-intake",
        payload=PaymentRequestedPayload(
            payment_id=uuid.uuid4(),
            idempotency_key=command.payload.idempotency_key,
            scope="invoice",
            method="guest_checkout",
            allocations=[Allocation(invoice_number="INV-1", amount=Money(amount_minor=125000, currency=USD))],
            total=Money(amount_minor=125000, currency=USD),
            repeat_of=repeat_of,
        ),
    )


def rejected(command: build.Command, code: str, message: str) -> PaymentRejected:
    return PaymentRejected.following(
        command,
        producer="payment-intake",
        payload=PaymentRejectedPayload(
            idempotency_key=command.payload.idempotency_key,
            command_type=command.type,
            reason_code=code,
            message=message,
            invoice_numbers=["INV-1"],
        ),
    )


def opened(cause: PaymentRequested) -> CheckoutOpened:
    return CheckoutOpened.following(
        cause,
        producer="payment-intake",
        payload=CheckoutOpenedPayload(
            payment_id=cause.payload.payment_id,
            checkout_id="co_1",
            checkout_url="http://provider/checkout/co_1",
            expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        ),
    )


def test_a_command_starts_its_own_chain_keyed_by_account_with_a_fresh_key() -> None:
    first = build.pay_invoice("C-1", "INV-1", guest())
    second = build.pay_invoice("C-1", "INV-1", guest())
    assert first.correlation_id == first.event_id and first.key() == b"C-1"
    assert first.payload.idempotency_key != second.payload.idempotency_key
    given = build.pay_invoice("C-1", "INV-1", guest(), idempotency_key="k-1")
    assert given.payload.idempotency_key == "k-1" and given.payload.amount is None


def test_fresh_idempotency_keys_never_look_like_card_numbers() -> None:
    from payments_contracts.card_numbers import contains_card_number

    assert not any(contains_card_number(build.new_idempotency_key()) for _ in range(5000))


def test_pay_selected_carries_each_invoice_with_its_amount() -> None:
    command = build.pay_selected(
        "A-1", [("INV-1", None), ("INV-2", Money(amount_minor=500, currency=USD))], PayerPortal()
    )
    assert [(i.invoice_number, i.amount) for i in command.payload.invoices] == [
        ("INV-1", None),
        ("INV-2", Money(amount_minor=500, currency=USD)),
    ]


async def test_the_first_answer_resolves_the_waiting_command() -> None:
    correlator = Correlator()
    command = build.pay_invoice("C-1", "INV-1", guest())
    future = correlator.expect(command.event_id)
    other = build.pay_invoice("C-2", "INV-9", guest())
    correlator.offer(rejected(other, "zero_balance", "no"))  # someone else's outcome
    assert not future.done()
    correlator.offer(
        rejected(command, "payment_pending", "A payment against invoice INV-1 is already pending.")
    )
    outcome = future.result()
    assert isinstance(outcome, Rejected) and outcome.reason_code == "payment_pending"
    assert "already pending" in outcome.message and len(correlator) == 0


async def test_until_checkout_waits_for_the_checkout_page() -> None:
    correlator = Correlator()
    command = build.pay_invoice("C-1", "INV-1", guest())
    future = correlator.expect(command.event_id, until_checkout=True)
    answer = requested(command)
    correlator.offer(answer)
    assert not future.done()
    correlator.offer(opened(answer))
    outcome = future.result()
    assert isinstance(outcome, Accepted)
    assert outcome.checkout_url == "http://provider/checkout/co_1"
    assert outcome.payment_id == answer.payload.payment_id
    assert outcome.total == Money(amount_minor=125000, currency=USD)


async def test_a_payment_that_fails_before_its_checkout_opens_ends_the_wait() -> None:
    correlator = Correlator()
    command = build.pay_invoice("C-1", "INV-1", guest())
    future = correlator.expect(command.event_id, until_checkout=True)
    answer = requested(command)
    correlator.offer(answer)
    correlator.offer(
        PaymentFailed.following(
            answer,
            producer="payment-intake",
            payload=PaymentEndedPayload(
                payment_id=answer.payload.payment_id, reason_code="checkout_refused", message="Try later."
            ),
        )
    )
    outcome = future.result()
    assert isinstance(outcome, Ended) and outcome.outcome == "failed"


async def test_a_repeat_resolves_at_once_with_what_it_repeats() -> None:
    correlator = Correlator()
    command = build.pay_invoice("C-1", "INV-1", guest(), idempotency_key="same")
    future = correlator.expect(command.event_id, until_checkout=True)
    first = uuid.uuid4()
    correlator.offer(requested(command, repeat_of=first))
    outcome = future.result()
    assert isinstance(outcome, Accepted) and outcome.repeat_of == first and outcome.checkout_url is None


async def test_remittance_answers_with_its_details() -> None:
    correlator = Correlator()
    command = build.pay_invoice("A-1", "INV-1", guest())
    future = correlator.expect(command.event_id, until_checkout=True)
    correlator.offer_raw(
        rejected(command, "offline_remittance", "Pay 980.00 USD to Accounts Receivable")
        .model_dump_json()
        .encode()
    )
    outcome = future.result()
    assert isinstance(outcome, RemittanceDetails) and outcome.message.startswith("Pay 980.00 USD")


async def test_raw_records_nobody_waits_for_are_not_decoded() -> None:
    correlator = Correlator()
    command = build.pay_invoice("C-1", "INV-1", guest())
    future = correlator.expect(command.event_id)
    correlator.offer_raw(b'{"correlation_id": "' + str(uuid.uuid4()).encode() + b'", "type": "junk"}')
    correlator.offer_raw(b"not json")
    correlator.offer_raw(None)
    await asyncio.sleep(0)
    assert not future.done()


@pytest.mark.parametrize("status", ["payable", "pending", "partially_paid", "paid", "not_payable"])
def test_read_model_knows_every_pay_status(status: str) -> None:
    from payments_portal_client.read_model import PayStatus

    assert PayStatus(status).value == status


ANSWERS = [
    (401, {"www-authenticate": "Bearer"}, {"detail": "a valid merchant API key is required"}, Unauthorized),
    (403, {}, {"detail": "forbidden"}, Unauthorized),
    (404, {}, {"detail": "unknown account C-1"}, NotFound),
    (422, {}, {"detail": [{"loc": ["query", "limit"]}]}, ReadModelError),
    (503, {"retry-after": "7"}, {"detail": "unavailable"}, Unavailable),
    (500, {}, "<html>proxy error</html>", ReadModelError),
]


@pytest.mark.parametrize(("status", "headers", "body", "error"), ANSWERS, ids=[str(a[0]) for a in ANSWERS])
async def test_every_refusal_of_the_read_api_is_a_typed_error_with_its_status_and_problem(
    status: int, headers: dict[str, str], body: object, error: type[ReadModelError]
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    answer = httpx.MockTransport(lambda _: httpx.Response(status, headers=headers, content=content))
    async with ReadModelClient("http://read-api", "pk_key", transport=answer) as client:
        with pytest.raises(ReadModelError) as raised:
            await client.summary("C-1")
    assert type(raised.value) is error
    assert (raised.value.status, raised.value.problem) == (status, body)
    if error is Unavailable:
        assert raised.value.retry_after_s == 7.0


async def test_an_unavailable_read_api_says_when_to_retry_by_date_too() -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    answer = httpx.MockTransport(lambda _: httpx.Response(503, headers={"retry-after": later}))
    async with ReadModelClient("http://read-api", "pk_key", transport=answer) as client:
        with pytest.raises(Unavailable) as raised:
            await client.invoice("C-1", "INV-1")
    assert raised.value.retry_after_s is not None and 100 < raised.value.retry_after_s <= 120
