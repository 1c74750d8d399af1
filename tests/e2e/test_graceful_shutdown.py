"""SIGTERM in the middle of a stream: the service finishes the batch in hand, drains its
outbox and exits 0, so everything it consumed is published and nothing is left behind."""

from __future__ import annotations

import signal

import asyncpg
import pytest

from erp_invoices import erp_invoice
from kafka_tools import eventually, produce, read_all
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from system import System

pytestmark = pytest.mark.e2e


def documents(run_id: str, n: int) -> list[ErpInvoiceUpserted]:
    return [
        erp_invoice(
            f"G-{run_id}-{i % 50}", f"G-{run_id}-{i:05d}", total="99.00", currency="EUR", country="DE"
        )
        for i in range(n)
    ]


async def consumed(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval("SELECT coalesce(sum(next_offset), 0) FROM invoice_sync.consumer_offsets")
        )
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def test_sigterm_mid_stream_drains_the_outbox_and_exits_cleanly(
    system: System, kafka_bootstrap: str, database_url: str, topics: TopicRegistry, run_id: str
) -> None:
    docs = documents(run_id, 20_000)
    await produce(kafka_bootstrap, topics.erp_invoices.name, docs)
    await eventually(lambda: consumed(database_url), lambda n: n > 0, timeout=30, what="some progress")

    assert system.stop_one("invoice-sync", signal.SIGTERM) == 0

    conn = await asyncpg.connect(database_url)
    try:
        left_in_outbox = await conn.fetchval("SELECT count(*) FROM invoice_sync.outbox")
    finally:
        await conn.close()
    assert left_in_outbox == 0, "the outbox was not drained before exit"
    applied = await consumed(database_url)
    synced = {
        str(m.causation_id)
        for m in (
            topics.invoices.decoder.validate_json(r.value)
            for r in await read_all(kafka_bootstrap, topics.invoices.name)
        )
        if m.type == "invoice.synced"
    }
    assert len(synced) == applied, "every consumed document is published, no more and no less"
