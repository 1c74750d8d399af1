"""The portal client against the running system (services as OS processes, real Kafka and
PostgreSQL): typed outcomes of every command kind, typed reads with the portal's key,
and the round trip from command to first outcome.

`PORTAL_CLIENT_ROUNDS` sets how many commands the round-trip measurement sends (the
suite sends a short run; the figure in clients/python/README.md is from 1,000).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from demo_portal.domain.portal import sandbox_demo_key
from erp_invoices import erp_invoice
from kafka_tools import eventually, produce
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_portal_client import (
    Accepted,
    BillingAddress,
    CardOnline,
    Ended,
    GuestCheckout,
    Money,
    NotFound,
    PayerPortal,
    PortalClient,
    ReadModelClient,
    Rejected,
    Remittance,
    RemittanceDetails,
)
from payments_portal_client.read_model import PayStatus
from portal_support import running_system
from system import System

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("PORTAL_CLIENT_ROUNDS", "55"))
ROUND_TRIP_ACCOUNTS = [f"R-{i}" for i in range(10)]


@pytest.fixture(scope="module")
async def merchant_system(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    merchants = {
        "default": "full-payment-portal",
        "merchants": {
            "m000": {"policy": "full-payment-portal", "accounts": ["C-1", *ROUND_TRIP_ACCOUNTS]},
            "m003": {"policy": "partial-multi-portal", "accounts": ["A-1"]},
        },
    }
    async with running_system(
        kafka_bootstrap, postgres_url, tmp_path_factory.mktemp("client"), merchants
    ) as system:
        yield system


def erp(account: str, number: str, amount: str) -> ErpInvoiceUpserted:
    return erp_invoice(
        account, number, total=amount, invoice_date=date(2026, 10, 1), due_date=date(2026, 10, 31)
    )


def guest() -> GuestCheckout:
    return GuestCheckout(
        billing_address=BillingAddress(
            email="ap@example.com",
            street="1 Main Street",
            country="US",
            postal_code="02139",
            phone_country_code="+1",
            phone_number="6175550100",
        ),
        name_on_card="Pat Buyer",
    )


async def payable_count(reader: ReadModelClient, account: str) -> int:
    try:
        return len(await reader.invoices(account, statuses=[PayStatus.payable]))
    except NotFound:
        return 0


def client_for(system: System, merchant: str = "m000") -> PortalClient:
    """The portal backend of one merchant, with its sandbox demo key."""
    return PortalClient(
        kafka_bootstrap=system.kafka_bootstrap,
        read_api_url=system.url("status-projector"),
        api_key=sandbox_demo_key(merchant),
        topic_prefix=system.topic_prefix,
        timeout_s=20,
    )


async def test_every_command_kind_gets_its_typed_outcome(merchant_system: System) -> None:
    system = merchant_system
    await produce(
        system.kafka_bootstrap,
        TopicRegistry(system.topic_prefix).erp_invoices.name,
        [erp("C-1", "INV-1", "1250.00"), erp("C-1", "INV-2", "90.00"), erp("A-1", "INV-9", "980.00")],
    )
    northwind = ReadModelClient(system.url("status-projector"), sandbox_demo_key("m003"))
    async with client_for(system) as client, northwind:
        await eventually(
            lambda: payable_count(client.read, "C-1"), lambda n: n == 2, timeout=45, what="C-1 payable"
        )
        await eventually(
            lambda: payable_count(northwind, "A-1"), lambda n: n == 1, timeout=45, what="A-1 payable"
        )

        # Reads, typed, with the key in the header.
        one = await client.read.invoice("C-1", "INV-1")
        assert one.balance.amount_minor == 125000 and one.pay_status == PayStatus.payable
        summary = await client.read.summary("C-1")
        assert [b.balance.amount_minor for b in summary.balances] == [134000]
        with pytest.raises(NotFound):
            await client.read.invoice("C-1", "INV-404")

        # Pay one invoice: accepted with the hosted card page.
        paid = await client.pay_invoice("C-1", "INV-1", guest(), idempotency_key="k-1")
        assert isinstance(paid, Accepted) and paid.checkout_url and "/checkout/" in paid.checkout_url
        assert paid.total == Money(amount_minor=125000, currency="USD")

        # The same key again: the first outcome, no new payment.
        again = await client.pay_invoice("C-1", "INV-1", guest(), idempotency_key="k-1")
        assert isinstance(again, Accepted) and again.payment_id == paid.payment_id and again.repeat_of

        # Another key while it is pending: the seed's error.
        pending = await client.pay_invoice("C-1", "INV-1", guest())
        assert isinstance(pending, Rejected) and pending.reason_code == "payment_pending"
        assert pending.message == "A payment against invoice INV-1 is already pending."

        # Cancel the open checkout: the invoice is payable again.
        cancelled = await client.cancel_checkout("C-1", paid.payment_id)
        assert isinstance(cancelled, Ended) and cancelled.outcome == "cancelled"

        # The account balance through the payer portal (seed 000).
        balance = await client.pay_account_balance("C-1", PayerPortal())
        assert isinstance(balance, Accepted) and balance.scope == "account_balance"
        assert balance.checkout_url and "/portal/" in balance.checkout_url

        # Seed 003: several invoices refused where the policy says so, remittance details.
        several = await client.pay_selected("C-1", [("INV-1", None), ("INV-2", None)], PayerPortal())
        assert isinstance(several, Rejected) and several.reason_code == "several_invoices_not_allowed"
        above = await client.pay_selected(
            "A-1", [("INV-9", Money(amount_minor=99000, currency="USD"))], CardOnline()
        )
        assert isinstance(above, Rejected) and above.reason_code == "amount_above_balance"
        wire = await client.pay_invoice("A-1", "INV-9", Remittance(channel="wire"))
        assert isinstance(wire, RemittanceDetails) and "INV-9" in wire.message
        partial = await client.pay_invoice(
            "A-1", "INV-9", CardOnline(), amount=Money(amount_minor=50000, currency="USD")
        )
        assert isinstance(partial, Accepted) and partial.total.amount_minor == 50000

    async with httpx.AsyncClient(base_url=system.url("status-projector")) as http:
        assert (await http.get("/v1/accounts/C-1/invoices")).status_code == 401  # no key, no read
        listed = await http.get(
            "/v1/accounts/C-1/invoices", headers={"authorization": f"Bearer {sandbox_demo_key('m000')}"}
        )
        assert listed.status_code == 200


async def test_round_trip_from_command_to_first_outcome(merchant_system: System) -> None:
    """Sequential pay commands, each on its own registered invoice: the time from publish
    to the first outcome (payment.requested) as the client sees it."""
    system = merchant_system
    accounts = ROUND_TRIP_ACCOUNTS
    invoices = [(accounts[i % len(accounts)], f"INV-{i:05d}") for i in range(ROUNDS)]
    await produce(
        system.kafka_bootstrap,
        TopicRegistry(system.topic_prefix).erp_invoices.name,
        [erp(account, number, "10.00") for account, number in invoices],
    )
    async with client_for(system) as client:
        for account in accounts:
            expected = sum(1 for a, _ in invoices if a == account)
            await eventually(
                lambda account=account: payable_count(client.read, account),
                lambda n, expected=expected: n == expected,
                timeout=120,
                interval=0.5,
                what=f"{account}'s invoices payable",
            )
        for account, number in invoices[:5]:  # warm-up: connections, caches
            await client.pay_invoice(account, number, PayerPortal(), wait_for_checkout=False)
        latencies_ms: list[float] = []
        for account, number in invoices[5:]:
            started = time.perf_counter()
            outcome = await client.pay_invoice(account, number, PayerPortal(), wait_for_checkout=False)
            latencies_ms.append((time.perf_counter() - started) * 1000)
            assert isinstance(outcome, Accepted), outcome
    latencies_ms.sort()
    figures = {
        "commands": len(latencies_ms),
        "median_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(latencies_ms[max(0, int(len(latencies_ms) * 0.99) - 1)], 2),
        "max_ms": round(latencies_ms[-1], 2),
    }
    out = ROOT / ".artifacts" / "portal-client-round-trip.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures) + "\n")
    print(f"portal client round trip: {figures}")
    assert figures["commands"] == ROUNDS - 5
