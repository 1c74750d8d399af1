"""The registration worker records provider answers on real PostgreSQL: an answer about
the invoice's current amount is recorded and announced; an
answer about an amount the invoice no longer has (the ERP changed it while the provider
was being asked) is recorded but not announced, and the newer amount is asked next."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from invoice_sync_support import upserted
from pydantic import TypeAdapter

from invoice_sync.adapters.schema import install
from invoice_sync.adapters.unit_of_work import UnitsOfWork
from invoice_sync.domain.registration import (
    Accepted,
    Outcome,
    RegistrationRequest,
    WithdrawalRequest,
)
from invoice_sync.entrypoints.main import handle_batch
from invoice_sync.settings import SCHEMA
from invoice_sync.workers import RegistrationWorker
from payments_contracts import Envelope, InvoiceEvent
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import Delivery, Outbox, Transaction

pytestmark = pytest.mark.integration

EVENTS: TypeAdapter[Envelope] = TypeAdapter(InvoiceEvent)


async def apply(pool: object, topics: TopicRegistry, messages: Sequence[ErpInvoiceUpserted]) -> None:
    """Apply ERP documents the way the consumer does: one transaction, outbox included."""
    async with pool.acquire() as conn, conn.transaction():  # type: ignore[attr-defined]
        outbox = Outbox(topics)
        deliveries = [Delivery(topics.erp_invoices.name, 0, i, m) for i, m in enumerate(messages)]
        await handle_batch(deliveries, Transaction(conn, outbox))
        await outbox.write(conn)


class ErpChangesWhileAsked:
    """A provider that accepts everything; while it is being asked, the ERP lowers the
    open amount of one invoice (applied through the real handlers)."""

    def __init__(self, pool: object, topics: TopicRegistry, change: ErpInvoiceUpserted) -> None:
        self.pool, self.topics, self.change = pool, topics, change
        self.asked: list[RegistrationRequest] = []

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        self.asked += requests
        if self.change is not None:
            await apply(self.pool, self.topics, [self.change])
            self.change = None  # type: ignore[assignment]
        return [Accepted(f"pi_{r.invoice_number}_{r.amount_minor}") for r in requests]

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]:
        return [Accepted("") for _ in requests]


async def test_current_answers_are_announced_and_stale_ones_asked_again(
    database_url: str, topics: TopicRegistry
) -> None:
    pool = await open_pool(database_url, SCHEMA, install=install)
    try:
        first = [upserted("ACC-1", "INV-1", total="10.00"), upserted("ACC-1", "INV-2", total="20.00")]
        await apply(pool, topics, first)
        changed = upserted("ACC-1", "INV-2", 2, total="20.00", open_amount="5.00")
        provider = ErpChangesWhileAsked(pool, topics, changed)
        worker = RegistrationWorker(UnitsOfWork(pool, topics), provider, batch_size=50)

        assert await worker.run_once() == 2
        rows = {
            r["invoice_number"]: r
            for r in await pool.fetch(
                "SELECT invoice_number, registered_amount_minor, provider_invoice_id FROM invoices"
            )
        }
        # The provider holds what it accepted, for both; only INV-1's is still current.
        assert rows["INV-1"]["registered_amount_minor"] == 1000
        assert rows["INV-2"]["registered_amount_minor"] == 2000
        pending = await pool.fetch("SELECT invoice_number, amount_minor FROM registrations")
        assert [(r["invoice_number"], r["amount_minor"]) for r in pending] == [("INV-2", 500)]

        assert await worker.run_once() == 1
        assert await pool.fetchval("SELECT count(*) FROM registrations") == 0
        assert (
            await pool.fetchval("SELECT registered_amount_minor FROM invoices WHERE invoice_number = 'INV-2'")
            == 500
        )
        assert [(r.invoice_number, r.amount_minor) for r in provider.asked] == [
            ("INV-1", 1000),
            ("INV-2", 2000),
            ("INV-2", 500),
        ]

        outbox = await pool.fetch("SELECT value FROM outbox ORDER BY id")
        events = [EVENTS.validate_json(r["value"]) for r in outbox]
        announced = [
            (e.payload.invoice_number, e.payload.erp_version, e.payload.amount.amount_minor)
            for e in events
            if e.type == "invoice.registered"
        ]
        assert announced == [("INV-1", 1, 1000), ("INV-2", 2, 500)]
        registered_inv1 = next(e for e in events if e.type == "invoice.registered")
        assert registered_inv1.correlation_id == first[0].correlation_id
        assert registered_inv1.causation_id == first[0].event_id
    finally:
        await pool.close()


class AsksTwice:
    """A provider so slow that the first worker's lease runs out: while it answers the
    first worker, a second worker claims the same calls, asks and records first."""

    def __init__(self) -> None:
        self.second: RegistrationWorker | None = None
        self.asked: list[RegistrationRequest] = []

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        self.asked += requests
        second, self.second = self.second, None
        if second is not None:
            assert await second.run_once() == len(requests)
        return [Accepted(f"pi_{r.invoice_number}") for r in requests]

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]:
        return [Accepted("") for _ in requests]


async def test_an_answer_recorded_by_two_workers_whose_leases_overlapped_is_announced_once(
    database_url: str, topics: TopicRegistry
) -> None:
    pool = await open_pool(database_url, SCHEMA, install=install)
    try:
        await apply(pool, topics, [upserted("ACC-1", "INV-1", total="10.00")])
        provider = AsksTwice()
        # A lease of zero: the claim is due again at once, as an expired lease would be.
        provider.second = RegistrationWorker(UnitsOfWork(pool, topics), provider, lease_s=0.0)
        first = RegistrationWorker(UnitsOfWork(pool, topics), provider, lease_s=0.0)

        assert await first.run_once() == 1
        assert [r.invoice_number for r in provider.asked] == ["INV-1", "INV-1"]
        outbox = await pool.fetch("SELECT value FROM outbox ORDER BY id")
        registered = [
            e for e in (EVENTS.validate_json(r["value"]) for r in outbox) if e.type == "invoice.registered"
        ]
        assert len(registered) == 1
        assert await pool.fetchval("SELECT count(*) FROM registrations") == 0
        assert await pool.fetchval("SELECT provider_invoice_id FROM invoices") == "pi_INV-1"
    finally:
        await pool.close()
