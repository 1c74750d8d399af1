"""Figure: ERP documents per second through invoice-sync, with provider registration.

N ERP documents (new invoices, many accounts) are produced to `erp.invoices` in batches
(timed: the produce anchor), then invoice-sync starts as an OS process next to the
sandbox provider; the window opens when it answers ready (documents already done by then
are left out of count and CPU) and ends when `invoice.synced` and `invoice.registered`
have been published on `invoices` for every document. CPU per document per process and the
RSS of each service come from the meter; then the anchors run on the same records.
"""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal

import asyncpg
from aiokafka import AIOKafkaConsumer
from anchors import Records, all_anchors, produce_batched
from common import Scratch, Services, committed, meter
from procs import OBSERVER

from payments_contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted
from payments_platform.kafka import client_options


def documents(n: int, accounts: int) -> Records:
    out = []
    for i in range(n):
        account = f"ACC-{i % accounts:05d}"
        total = Decimal(1000 + i % 997).scaleb(-2) + 10
        message = ErpInvoiceUpserted.originating(
            producer="erp-bench",
            account_id=account,
            payload=ErpInvoiceDocument(
                invoice_number=f"INV-{i:07d}",
                version=1,
                order_number=f"SO-{i:07d}",
                po_number=f"PO-{i % 5000:05d}",
                invoice_date=date(2026, 11, 1),
                due_date=date(2026, 12, 1),
                currency="USD",
                total=total,
                open_amount=total,
                billing_country="US",
            ),
        )
        out.append((message.key(), message.model_dump_json().encode()))
    return out


class Published:
    """Counts `invoice.synced` and `invoice.registered` on `invoices` (headers only)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen = {b"invoice.synced": 0, b"invoice.registered": 0}
        self.consumer = AIOKafkaConsumer(
            topic,
            **client_options(bootstrap),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=5000,
            fetch_max_bytes=32 * 1024 * 1024,
        )

    async def _read(self, timeout_ms: int) -> int:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        for records in batch.values():
            for r in records:
                for k, v in r.headers:
                    if k == "type" and v in self.seen:
                        self.seen[v] += 1
        return sum(len(records) for records in batch.values())

    async def until(self, wanted: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while min(self.seen.values()) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.seen} of {wanted} seen")
            await self._read(50)
        return time.monotonic()


async def run_once(bootstrap: str, admin_dsn: str, n: int, accounts: int = 2000) -> dict[str, object]:
    async with Scratch(bootstrap, admin_dsn) as scratch:
        services = Services(scratch)
        erp = scratch.registry.erp_invoices
        docs = documents(n, accounts)
        try:
            provider = services.start("sandbox-provider")
            await services.ready("sandbox-provider", services.ports["sandbox-provider"])
            produce_s = await produce_batched(bootstrap, erp.name, erp.partitions, docs)
            published = Published(bootstrap, scratch.registry.invoices.name)
            await published.consumer.start()
            try:
                service = services.start("invoice-sync")
                await services.ready("invoice-sync", services.ports["invoice-sync"])
                # The window opens at readiness; documents consumed before it (committed
                # offsets, exact) are left out of both the count and the CPU.
                observer = await asyncpg.connect(scratch.dsn, server_settings={"application_name": OBSERVER})
                try:
                    before = await committed(observer, [erp.name])
                    m, postgres = await meter(scratch, [service.pid], [provider.pid])
                    started = time.monotonic()
                    ended = await published.until(n, timeout=120 + n / 100)
                    await m.stop()
                    await postgres.stop()
                finally:
                    await observer.close()
            finally:
                await published.consumer.stop()
        finally:
            services.stop()
        anchors = await all_anchors(scratch, docs, {erp.name: erp.partitions}, erp.partitions, produce_s)
    counted = n - before
    summary = m.summary(counted)
    rate = counted / (ended - started)
    print(
        f"  invoice-sync: {counted} documents in {ended - started:.2f}s = {rate:,.0f}/s "
        f"({before} done before ready); CPU µs/document {summary['cpu_us_per_message']}",
        flush=True,
    )
    return {
        "invoice_sync.throughput": {
            "value": rate,
            "unit": "documents/s",
            "messages": counted,
            "done_before_window": before,
            **summary,
            "anchors": anchors,
        },
    }
