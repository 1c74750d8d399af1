"""Stripe's webhooks through the real endpoint (`POST /callbacks/stripe`) and the real
consumer, on Kafka and PostgreSQL: events built from the objects stripe-mock returns,
signed with Stripe's scheme, move the payment by the same domain rule as the sandbox's
webhooks; a repeated event id has no second effect; a forged, stale or unsigned one is
refused and nothing is kept; a signed body that is not a Stripe event gets 400; an event
type we do not act on is acknowledged and ignored; during a rotation both secrets verify.
The checkout itself is opened by the Stripe connector against stripe-mock."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import asyncpg
import pytest
import stripe
from message_builders import pay_invoice
from payment_intake_support import fresh_database, fresh_topics, running_intake, until

from payments_contracts.payments import CardOnline

pytestmark = pytest.mark.integration

OLD, NEW = "whsec_rotating_old_secret", "whsec_rotating_new_secret"
RUN = uuid.uuid4().hex[:6].upper()
STRIPE_ACCOUNTS = [f"ST-{RUN}-{i}" for i in range(8)]
SANDBOX_ACCOUNT = f"SB-{RUN}"


@pytest.fixture(scope="module")
async def env(kafka_bootstrap, postgres_url, stripe_mock, tmp_path_factory):
    merchants = tmp_path_factory.mktemp("merchants") / "merchants.json"
    merchants.write_text(
        json.dumps(
            {
                "merchants": {
                    "acme-stripe": {
                        "policy": "partial-multi-portal",
                        "accounts": STRIPE_ACCOUNTS,
                        "provider": "stripe",
                        "stripe": {"credentials": "env:ROTATING", "return_url": "https://portal.example/"},
                    },
                    "acme-sandbox": {"policy": "partial-multi-portal", "accounts": [SANDBOX_ACCOUNT]},
                }
            }
        )
    )
    os.environ["STRIPE_ROTATING_SECRET_KEY"] = "sk_test_51RotatingKeyForTests"
    os.environ["STRIPE_ROTATING_WEBHOOK_SECRETS"] = f"{OLD} {NEW}"
    try:
        async with fresh_database(postgres_url) as db:
            topics = await fresh_topics(kafka_bootstrap)
            async with running_intake(
                kafka_bootstrap=kafka_bootstrap,
                database_url=db,
                topics=topics,
                merchant_config=str(merchants),
                stripe_api_base=stripe_mock,
            ) as intake:
                yield intake, db, stripe_mock
    finally:
        del os.environ["STRIPE_ROTATING_SECRET_KEY"], os.environ["STRIPE_ROTATING_WEBHOOK_SECRETS"]


async def opened(intake, account: str, number: str, minor: int) -> tuple[uuid.UUID, str]:
    await intake.invoice(account, number, minor)
    command = pay_invoice(account, number, method=CardOnline())
    await intake.send(command)
    answer = await intake.answer(command)
    assert answer.type == "payment.requested", answer.payload
    checkout = await intake.event(answer.payload.payment_id, "payment.checkout_opened")
    return answer.payload.payment_id, checkout.payload.checkout_id


async def stripe_session(stripe_mock: str, checkout_id: str, **changes: Any) -> dict[str, Any]:
    """A Checkout Session as stripe-mock returns it, with what a completed one carries."""
    client = stripe.StripeClient(
        "sk_test_123", base_addresses={"api": stripe_mock}, http_client=stripe.HTTPXClient()
    )
    session: dict[str, Any] = (await client.v1.checkout.sessions.retrieve_async(checkout_id)).to_dict()
    return {**session, "id": checkout_id, **changes}


def event(kind: str, data_object: dict[str, Any], *, event_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "data": {"object": data_object},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        },
        default=str,  # the library reads Stripe's decimal strings as Decimal; they go back as strings
    )


def signed(body: str, secret: str = NEW, *, at: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=at)
    return {"content-type": "application/json", "stripe-signature": header}


async def post(intake, body: str, headers: dict[str, str]):
    return await intake.http.post(intake.http_url + "/callbacks/stripe", content=body, headers=headers)


async def payment_status(db: str, payment_id: uuid.UUID) -> str:
    conn = await asyncpg.connect(db, server_settings={"search_path": "payment_intake"})
    try:
        return str(await conn.fetchval("SELECT status FROM payments WHERE payment_id = $1", payment_id))
    finally:
        await conn.close()


async def received(db: str, webhook_id: str) -> int:
    conn = await asyncpg.connect(db, server_settings={"search_path": "payment_intake"})
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM webhooks_received WHERE webhook_id = $1", webhook_id)
        )
    finally:
        await conn.close()


async def test_a_completed_session_pays_the_invoice_once(env):
    intake, db, stripe_mock = env
    account = STRIPE_ACCOUNTS[0]
    payment_id, checkout_id = await opened(intake, account, "INV-2101", 98_000)
    metadata = {"payment_id": str(payment_id), "account_id": account, "merchant": "acme-stripe"}
    session = await stripe_session(
        stripe_mock,
        checkout_id,
        status="complete",
        payment_status="paid",
        amount_total=98_000,
        currency="usd",
        payment_intent="pi_3PaidByStripe",
        metadata=metadata,
    )
    body = event("checkout.session.completed", session, event_id=f"evt_paid{RUN}")
    answer = await post(intake, body, signed(body, OLD))  # the old secret, mid-rotation
    assert answer.status_code == 200 and answer.json() == {"status": "accepted"}, answer.text
    succeeded = await intake.event(payment_id, "payment.succeeded")
    assert succeeded.payload.amount.amount_minor == 98_000
    assert succeeded.payload.provider_payment_ref == "pi_3PaidByStripe"
    assert await until(lambda: payment_status(db, payment_id)) == "succeeded"
    again = await post(intake, body, signed(body, NEW))
    assert again.json() == {"status": "duplicate"}
    assert await received(db, f"evt_paid{RUN}") == 1
    assert len([e for e in intake.events.for_payment(payment_id) if e.type == "payment.succeeded"]) == 1


async def test_a_delayed_payment_that_fails_makes_the_invoice_payable_again(env):
    intake, _, stripe_mock = env
    account = STRIPE_ACCOUNTS[1]
    payment_id, checkout_id = await opened(intake, account, "INV-2102", 70_000)
    metadata = {"payment_id": str(payment_id), "account_id": account}
    unpaid = await stripe_session(
        stripe_mock, checkout_id, status="complete", payment_status="unpaid", metadata=metadata
    )
    body = event("checkout.session.completed", unpaid)
    assert (await post(intake, body, signed(body))).status_code == 200
    await intake.event(payment_id, "payment.processing")
    body = event("checkout.session.async_payment_failed", unpaid)
    assert (await post(intake, body, signed(body))).status_code == 200
    failed = await intake.event(payment_id, "payment.failed")
    assert failed.payload.reason_code == "payment_failed"


async def test_refused_and_ignored_bodies(env):
    intake, db, stripe_mock = env
    account = STRIPE_ACCOUNTS[2]
    payment_id, checkout_id = await opened(intake, account, "INV-2103", 10_000)
    metadata = {"payment_id": str(payment_id), "account_id": account}
    session = await stripe_session(stripe_mock, checkout_id, metadata=metadata)
    body = event("checkout.session.expired", session, event_id=f"evt_refused{RUN}")

    assert (await post(intake, body, signed(body, "whsec_somebody_else"))).status_code == 401
    assert (await post(intake, body, {"content-type": "application/json"})).status_code == 400
    stale = int(time.time()) - 301
    assert (await post(intake, body, signed(body, at=stale))).status_code == 400
    future = int(time.time()) + 301
    assert (await post(intake, body, signed(body, at=future))).status_code == 400
    tampered = signed(body)
    assert (await post(intake, body.replace(account, STRIPE_ACCOUNTS[3]), tampered)).status_code == 401
    assert await received(db, f"evt_refused{RUN}") == 0

    for not_an_event in ('{"hello": "world"}', "[1, 2, 3]", "not json at all"):
        answer = await post(intake, not_an_event, signed(not_an_event))
        assert answer.status_code == 400, (not_an_event, answer.text)
        assert answer.json()["error"]["code"] == "invalid_body"

    unknown = event("customer.created", {"id": "cus_1", "object": "customer", "metadata": {}})
    assert (await post(intake, unknown, signed(unknown))).json() == {
        "status": "ignored",
        "reason": "event type not handled",
    }

    # A Stripe merchant's secret never vouches for another merchant's account.
    foreign = event(
        "checkout.session.expired",
        {**session, "metadata": {"payment_id": str(payment_id), "account_id": SANDBOX_ACCOUNT}},
    )
    assert (await post(intake, foreign, signed(foreign))).status_code == 409

    assert (await post(intake, body, signed(body))).json() == {"status": "accepted"}
    expired = await intake.event(payment_id, "payment.expired")
    assert expired.payload.reason_code == "checkout_expired"
