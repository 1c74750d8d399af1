"""The walking skeleton, end to end: three services and the sandbox provider as separate
OS processes on real Kafka and PostgreSQL.

1. An ERP invoice becomes a canonical invoice event, is registered with the provider and
   shows as `payable` with its balance.
2. A pay command opens a checkout; the invoice shows `pending`.
3. The provider completes the payment and sends a signed webhook; the invoice shows
   `paid` with balance 0.
4. A second pay command while the first is pending is rejected with a stable reason code.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from erp_invoices import erp_invoice
from kafka_tools import eventually, produce, read_all
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.payments import (
    BillingAddress,
    GuestCheckout,
    PayInvoice,
    PayInvoicePayload,
)
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from system import System

pytestmark = pytest.mark.e2e


def seed_000_invoice(account: str, number: str) -> ErpInvoiceUpserted:
    """The seed page's example: an outstanding invoice for $1,250.00."""
    return erp_invoice(
        account,
        number,
        total="1250.00",
        order_number="SO-88812",
        po_number="PO-4471",
        invoice_date=date(2026, 10, 1),
        due_date=date(2026, 10, 31),
    )


def guest_checkout_command(account: str, number: str, key: str) -> PayInvoice:
    return PayInvoice.originating(
        producer="portal-backend",
        account_id=account,
        payload=PayInvoicePayload(
            idempotency_key=key,
            invoice_number=number,
            method=GuestCheckout(
                billing_address=BillingAddress(
                    email="ap@example.com",
                    street="1 Main Street",
                    address_line2="Suite 4",
                    country="US",
                    postal_code="02139",
                    phone_country_code="+1",
                    phone_number="6175550100",
                ),
                name_on_card="Pat Buyer",
            ),
        ),
    )


E2E_MERCHANT = "e2e-merchant"  # owns the run's accounts in the merchant file (conftest.py)


async def invoice_status(system: System, account: str, number: str) -> dict[str, Any]:
    portal = {"authorization": f"Bearer {demo_api_key(E2E_MERCHANT)}"}
    async with httpx.AsyncClient(base_url=system.url("status-projector"), headers=portal) as client:
        response = await client.get(f"/v1/accounts/{account}/invoices/{number}")
        return {"http": response.status_code, **(response.json() if response.status_code == 200 else {})}


async def until_status(system: System, account: str, number: str, status: str) -> dict[str, Any]:
    return await eventually(
        lambda: invoice_status(system, account, number),
        lambda s: s.get("pay_status") == status,
        timeout=45,
        interval=0.2,
        what=f"{number} to be {status}",
    )


async def payment_events(bootstrap: str, topics: TopicRegistry, correlation_id: str) -> list[Any]:
    decoder = topics.payments_events.decoder
    events = [decoder.validate_json(r.value) for r in await read_all(bootstrap, topics.payments_events.name)]
    return [e for e in events if str(e.correlation_id) == correlation_id]


async def until_event(bootstrap: str, topics: TopicRegistry, command: PayInvoice, type_: str) -> Any:
    events = await eventually(
        lambda: payment_events(bootstrap, topics, str(command.event_id)),
        lambda es: any(e.type == type_ for e in es),
        timeout=45,
        interval=0.3,
        what=f"{type_} for command {command.payload.idempotency_key}",
    )
    return next(e for e in events if e.type == type_)


async def test_an_erp_invoice_goes_payable_pending_paid_and_a_second_pay_is_rejected(
    system: System, kafka_bootstrap: str, topics: TopicRegistry, run_id: str
) -> None:
    account, number = f"C-{run_id}", f"INV-{run_id}"

    # 1. ERP invoice -> invoices -> registered with the provider -> payable with its balance.
    await produce(kafka_bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)])
    payable = await until_status(system, account, number, "payable")
    assert payable["balance"] == {"amount_minor": 125000, "currency": "USD"}
    assert payable["pay_button"] is True
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        registered = (await provider.get("/sandbox/invoices")).json()
    assert [(i["account_id"], i["invoice_number"], i["amount_minor"]) for i in registered] == [
        (account, number, 125000)
    ]

    # 2. Pay command -> accepted, checkout opened with the provider -> pending.
    first = guest_checkout_command(account, number, key=f"pay-{run_id}-1")
    await produce(kafka_bootstrap, topics.payments_commands.name, [first])
    opened = await until_event(kafka_bootstrap, topics, first, "payment.checkout_opened")
    pending = await until_status(system, account, number, "pending")
    assert pending["pay_button"] is False

    # 4. A second pay command while the first is pending is rejected, as the seed says.
    second = guest_checkout_command(account, number, key=f"pay-{run_id}-2")
    await produce(kafka_bootstrap, topics.payments_commands.name, [second])
    rejected = await until_event(kafka_bootstrap, topics, second, "payment.rejected")
    assert rejected.payload.reason_code == "payment_pending"
    assert "already pending" in rejected.payload.message

    # 3. The provider completes the payment and sends signed webhooks -> paid, balance 0.
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        done = await provider.post(f"/sandbox/checkouts/{opened.payload.checkout_id}/complete")
        assert done.status_code == 200, done.text
    succeeded = await until_event(kafka_bootstrap, topics, first, "payment.succeeded")
    assert succeeded.payload.amount.amount_minor == 125000
    paid = await until_status(system, account, number, "paid")
    assert paid["balance"] == {"amount_minor": 0, "currency": "USD"}
    assert paid["pay_button"] is False

    # Every command was answered exactly once.
    first_answers = [e.type for e in await payment_events(kafka_bootstrap, topics, str(first.event_id))]
    assert first_answers.count("payment.requested") == 1 and "payment.rejected" not in first_answers
    second_answers = [e.type for e in await payment_events(kafka_bootstrap, topics, str(second.event_id))]
    assert second_answers == ["payment.rejected"]
