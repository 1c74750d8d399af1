"""Helpers for the status-projector integration tests: events, publishing, projecting
until caught up, and dumping a version's rows for comparison."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from message_builders import usd

from payments_contracts import Envelope
from payments_contracts.invoices import (
    InvoiceRegistered,
    InvoiceRegisteredPayload,
    InvoiceSynced,
    InvoiceSyncedPayload,
    PostedPayment,
)
from payments_contracts.payments import (
    Allocation,
    CheckoutOpened,
    CheckoutOpenedPayload,
    InvoiceRestrictionChanged,
    InvoiceRestrictionChangedPayload,
    PaymentEndedPayload,
    PaymentFailed,
    PaymentRejected,
    PaymentRejectedPayload,
    PaymentRequested,
    PaymentRequestedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
)
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from status_projector.adapters.schema import VersionTables, install
from status_projector.domain.access import MerchantKeys, PortalKeys, digest_of
from status_projector.entrypoints.http import build_app
from status_projector.projections import input_topics, kafka_offsets, projection_consumer, run_until
from status_projector.settings import SCHEMA

PRODUCER = "test"
BASE = datetime(2025, 1, 1, tzinfo=UTC)


class Clock:
    """Event times that move forward, so tests never depend on the wall clock."""

    def __init__(self) -> None:
        self.now = BASE

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def synced(
    clock: Clock,
    account: str,
    number: str,
    *,
    total: int = 10_000,
    open_amount: int | None = None,
    version: int = 1,
    posted: Sequence[tuple[str, int]] = (),
    due: date = date(2025, 2, 1),
    status: str = "open",
) -> InvoiceSynced:
    return InvoiceSynced.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=InvoiceSyncedPayload(
            invoice_number=number,
            erp_version=version,
            order_number=f"SO-{number}",
            po_number=f"PO-{number}",
            invoice_date=date(2025, 1, 1),
            due_date=due,
            total=usd(total),
            open_amount=usd(total if open_amount is None else open_amount),
            erp_status=status,  # type: ignore[arg-type]
            billing_country="US",
            posted_payments=[PostedPayment(reference=r, amount=usd(a)) for r, a in posted],
        ),
    )


def registered(clock: Clock, account: str, number: str, *, version: int = 1) -> InvoiceRegistered:
    return InvoiceRegistered.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=InvoiceRegisteredPayload(
            invoice_number=number,
            erp_version=version,
            provider_invoice_id=f"prov-{number}",
            amount=usd(1),
        ),
    )


def requested(
    clock: Clock, account: str, payment_id: uuid.UUID, allocations: Sequence[tuple[str, int]]
) -> PaymentRequested:
    return PaymentRequested.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=PaymentRequestedPayload(
            payment_id=payment_id,
            idempotency_key=f"idem-{payment_id}",
            scope="invoice" if len(allocations) == 1 else "selected_invoices",
            method="card",
            allocations=[Allocation(invoice_number=n, amount=usd(a)) for n, a in allocations],
            total=usd(sum(a for _, a in allocations)),
        ),
    )


def checkout_opened(clock: Clock, account: str, payment_id: uuid.UUID) -> CheckoutOpened:
    return CheckoutOpened.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=CheckoutOpenedPayload(
            payment_id=payment_id,
            checkout_id=f"co-{payment_id}",
            checkout_url="http://127.0.0.1:8040/checkout",
            expires_at=clock.now + timedelta(hours=1),
        ),
    )


def succeeded(
    clock: Clock, account: str, payment_id: uuid.UUID, allocations: Sequence[tuple[str, int]]
) -> PaymentSucceeded:
    return PaymentSucceeded.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=PaymentSucceededPayload(
            payment_id=payment_id,
            amount=usd(sum(a for _, a in allocations)),
            allocations=[Allocation(invoice_number=n, amount=usd(a)) for n, a in allocations],
        ),
    )


def failed(
    clock: Clock, account: str, payment_id: uuid.UUID, reason: str = "payment_failed"
) -> PaymentFailed:
    return PaymentFailed.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=PaymentEndedPayload(
            payment_id=payment_id, reason_code=reason, message="The card was declined"
        ),
    )


def rejected(
    clock: Clock, account: str, numbers: Sequence[str], reason: str = "payment_pending"
) -> PaymentRejected:
    return PaymentRejected.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=PaymentRejectedPayload(
            idempotency_key=f"idem-{uuid.uuid4()}",
            command_type="payment.pay_invoice",
            reason_code=reason,
            message="A payment is already pending",
            invoice_numbers=list(numbers),
        ),
    )


def restriction_changed(
    clock: Clock, account: str, number: str, *, restricted: bool
) -> InvoiceRestrictionChanged:
    return InvoiceRestrictionChanged.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=InvoiceRestrictionChangedPayload(
            invoice_number=number,
            restricted=restricted,
            reason_code="pay_through_distributor" if restricted else None,
            message="Invoices billed to CA are paid through your distributor" if restricted else None,
        ),
    )


def account_story(clock: Clock, account: str, invoices: int = 3) -> list[Envelope]:
    """A realistic account: invoices synced and registered; one paid in full, one paid
    partially after a failed attempt, one with a checkout still open, a rejection."""
    events: list[Envelope] = []
    for i in range(invoices):
        number = f"{account}-INV-{i}"
        events += [
            synced(clock, account, number, due=date(2025, 2, 1 + i)),
            registered(clock, account, number),
        ]
    first, second, third = (f"{account}-INV-{i}" for i in range(3))
    p1, p2, p3, p4 = (uuid.uuid4() for _ in range(4))
    events += [
        requested(clock, account, p1, [(first, 10_000)]),
        checkout_opened(clock, account, p1),
        succeeded(clock, account, p1, [(first, 10_000)]),
        requested(clock, account, p2, [(second, 4_000)]),
        failed(clock, account, p2),
        requested(clock, account, p3, [(second, 4_000)]),
        succeeded(clock, account, p3, [(second, 4_000)]),
        rejected(clock, account, [second], reason="amount_above_balance"),
        requested(clock, account, p4, [(third, 10_000)]),
        checkout_opened(clock, account, p4),
    ]
    return events


async def publish(bootstrap: str, registry: TopicRegistry, messages: Sequence[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(registry.for_message(m).name, m.model_dump_json().encode(), key=m.key())
            for m in messages
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def projector_pool(database_url: str) -> asyncpg.Pool:
    return await open_pool(database_url, SCHEMA, size=4, install=install)


async def project_to_end(
    pool: asyncpg.Pool,
    registry: TopicRegistry,
    bootstrap: str,
    version: int = 1,
    *,
    batch_size: int = 500,
) -> None:
    """Run version `version`'s consumer until it has applied everything on the topics."""
    tables = VersionTables(version)
    starts, ends = await kafka_offsets(bootstrap, input_topics(registry))
    consumer = projection_consumer(
        name=tables.consumer,
        tables=tables,
        registry=registry,
        pool=pool,
        bootstrap=bootstrap,
        batch_size=batch_size,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
    )
    await run_until(consumer, pool, starts=starts, ends=ends)


async def dump(pool: asyncpg.Pool, version: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of a version, in a stable order (parked_at, a wall-clock time, left out)."""
    t = VersionTables(version)
    async with pool.acquire() as conn:
        invoices = await conn.fetch(f"SELECT * FROM {t.invoices} ORDER BY account_id, invoice_number")
        payments = await conn.fetch(f"SELECT * FROM {t.payments} ORDER BY payment_id")
        parked = await conn.fetch(f"SELECT * FROM {t.parked} ORDER BY event_id")
    return {
        "invoices": [dict(r) for r in invoices],
        "payments": [dict(r) for r in payments],
        "parked": [{k: v for k, v in dict(r).items() if k != "parked_at"} for r in parked],
    }


async def invoice_row(
    pool: asyncpg.Pool, account: str, number: str, version: int = 1
) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            f"SELECT * FROM {VersionTables(version).invoices} WHERE account_id = $1 AND invoice_number = $2",
            account,
            number,
        )


PORTAL_KEY = "pk_test_portal_of_the_merchant_under_test"


def read_api(
    pool: asyncpg.Pool, topics: TopicRegistry, accounts: Sequence[str], *, provider_configured: bool = True
) -> httpx.ASGITransport:
    """The read API in this process; PORTAL_KEY is the key of a merchant owning `accounts`."""
    keys = PortalKeys([MerchantKeys("merchant-under-test", frozenset(accounts), (digest_of(PORTAL_KEY),))])
    return httpx.ASGITransport(app=build_app(pool, topics, keys, provider_configured=provider_configured))


def portal_client(
    pool: asyncpg.Pool, topics: TopicRegistry, accounts: Sequence[str], *, provider_configured: bool = True
) -> httpx.AsyncClient:
    """The read API in this process, called with the key of a merchant owning `accounts`."""
    return httpx.AsyncClient(
        transport=read_api(pool, topics, accounts, provider_configured=provider_configured),
        base_url="http://projector",
        headers={"authorization": f"Bearer {PORTAL_KEY}"},
    )
