"""A Stripe merchant end to end, the services as OS processes: seed 000's INV-1001 from
payable to paid and a seed 003 partial payment, each through the Stripe connector
against the sandbox provider's Stripe mode (customers, Checkout Sessions, Stripe-signed
events to `/callbacks/stripe`), on real Kafka and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_walking_skeleton import guest_checkout_command, seed_000_invoice

from erp_invoices import erp_invoice
from kafka_tools import eventually, produce, read_all
from payments_contracts.money import Money
from payments_contracts.payments import CardOnline, PayInvoice, PayInvoicePayload
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from system import System

pytestmark = pytest.mark.e2e


@pytest.fixture
def stripe_system(system_with: Callable[..., System], run_id: str) -> System:
    return system_with(
        {
            "merchants": {
                "stripe-000": {"accounts": [f"C-{run_id}"], "provider": "stripe"},
                "stripe-003": {
                    "policy": "partial-multi-portal",
                    "accounts": [f"A-{run_id}"],
                    "provider": "stripe",
                },
            }
        }
    )


async def status(system: System, merchant: str, account: str, number: str) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {demo_api_key(merchant)}"}
    async with httpx.AsyncClient(base_url=system.url("status-projector"), headers=headers) as client:
        response = await client.get(f"/v1/accounts/{account}/invoices/{number}")
        return response.json() if response.status_code == 200 else {}


async def until_status(
    system: System, merchant: str, account: str, number: str, wanted: str
) -> dict[str, Any]:
    return await eventually(
        lambda: status(system, merchant, account, number),
        lambda s: s.get("pay_status") == wanted,
        timeout=60,
        interval=0.3,
        what=f"{number} to be {wanted}",
    )


async def until_event(bootstrap: str, topics: TopicRegistry, command: PayInvoice, kind: str) -> Any:
    decoder = topics.payments_events.decoder

    async def events() -> list[Any]:
        found = [
            decoder.validate_json(r.value) for r in await read_all(bootstrap, topics.payments_events.name)
        ]
        return [e for e in found if e.correlation_id == command.event_id and e.type == kind]

    return (await eventually(events, bool, timeout=60, interval=0.3, what=kind))[0]


async def pay_at_the_hosted_page(system: System, checkout_id: str) -> None:
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        done = await provider.post(f"/sandbox/checkouts/{checkout_id}/complete")
        assert done.status_code == 200, done.text


async def test_seed_000_and_seed_003_through_the_stripe_connector(
    stripe_system: System, kafka_bootstrap: str, topics: TopicRegistry, run_id: str
) -> None:
    system, account, number = stripe_system, f"C-{run_id}", "INV-1001"
    await produce(kafka_bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)])
    payable = await until_status(system, "stripe-000", account, number, "payable")
    assert payable["balance"] == {"amount_minor": 125000, "currency": "USD"}
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        found = (
            await provider.get(
                "/stripe/v1/customers/search",
                params={"query": f"metadata['account_id']:'{account}'"},
                headers={"authorization": "Bearer sk_test_51SandboxPublishedDemoKeyNotReal"},
            )
        ).json()
    assert len(found["data"]) == 1  # registered: the account's Stripe Customer

    command = guest_checkout_command(account, number, key=f"stripe-{run_id}-1")
    await produce(kafka_bootstrap, topics.payments_commands.name, [command])
    opened = await until_event(kafka_bootstrap, topics, command, "payment.checkout_opened")
    await until_status(system, "stripe-000", account, number, "pending")
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        checkouts = (await provider.get("/sandbox/checkouts")).json()
    assert [c["provider"] for c in checkouts if c["checkout_id"] == opened.payload.checkout_id] == ["stripe"]
    await pay_at_the_hosted_page(system, opened.payload.checkout_id)
    succeeded = await until_event(kafka_bootstrap, topics, command, "payment.succeeded")
    assert succeeded.payload.amount.amount_minor == 125000
    assert succeeded.payload.provider_payment_ref.startswith("pi_")
    paid = await until_status(system, "stripe-000", account, number, "paid")
    assert paid["balance"] == {"amount_minor": 0, "currency": "USD"}

    # Seed 003: a partial payment of one invoice; the rest stays payable.
    distributor, invoice = f"A-{run_id}", "INV-2101"
    await produce(
        kafka_bootstrap, topics.erp_invoices.name, [erp_invoice(distributor, invoice, total="980.00")]
    )
    await until_status(system, "stripe-003", distributor, invoice, "payable")
    partial = PayInvoice.originating(
        producer="portal-backend",
        account_id=distributor,
        payload=PayInvoicePayload(
            idempotency_key=f"stripe-{run_id}-2",
            invoice_number=invoice,
            amount=Money(amount_minor=50000, currency="USD"),
            method=CardOnline(),
        ),
    )
    await produce(kafka_bootstrap, topics.payments_commands.name, [partial])
    opened = await until_event(kafka_bootstrap, topics, partial, "payment.checkout_opened")
    await pay_at_the_hosted_page(system, opened.payload.checkout_id)
    await until_event(kafka_bootstrap, topics, partial, "payment.succeeded")
    after = await until_status(system, "stripe-003", distributor, invoice, "partially_paid")
    assert after["balance"] == {"amount_minor": 48000, "currency": "USD"}
