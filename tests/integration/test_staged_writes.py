"""Rows COPY'd into a staging table are written by one statement that also empties the
stage: a transaction that writes twice (a failed batch applied one message at a time, in
one transaction) must not write the first rows again with the second. Before, the stage
was emptied only at commit: the second upsert met the same invoice twice and failed
(payment-intake and invoice-sync dead-lettered valid events in `make chaos`), and the
projector's UPDATE could take either row. payment-intake's own case runs in
test_payment_intake_invoice_facts_run.py."""

from __future__ import annotations

from datetime import date

import pytest

from invoice_sync.adapters.repositories import InvoiceRepository
from invoice_sync.adapters.schema import install
from invoice_sync.domain.model import Invoice, InvoiceDetails
from payments_platform.database import open_pool
from status_projector.adapters.rows import Stage, merge_from_stage

pytestmark = pytest.mark.integration


def invoice(version: int, open_minor: int) -> Invoice:
    details = InvoiceDetails(
        invoice_number="INV-1",
        order_number=None,
        po_number=None,
        invoice_date=date(2026, 11, 1),
        due_date=date(2026, 12, 1),
        currency="USD",
        total_minor=10_000,
        open_minor=open_minor,
        billing_country="US",
    )
    return Invoice("C-1", "INV-1", version, "open", details)


async def test_invoice_sync_writes_the_same_invoice_twice_in_one_transaction(database_url: str) -> None:
    pool = await open_pool(database_url, "staged_invoice_sync", install=install)
    try:
        async with pool.acquire() as conn, conn.transaction():
            for version, open_minor in ((1, 10_000), (2, 4_000)):
                repo = InvoiceRepository(conn)
                repo.put(invoice(version, open_minor))
                await repo.flush()
            assert await conn.fetchval("SELECT count(*) FROM invoice_sync_stage") == 0
        row = await pool.fetchrow("SELECT erp_version, open_minor FROM invoices")
        assert (row["erp_version"], row["open_minor"]) == (2, 4_000)
    finally:
        await pool.close()


async def test_the_projector_merges_the_same_row_twice_in_one_transaction(database_url: str) -> None:
    pool = await open_pool(database_url, "staged_projector")
    stage = Stage("staged_test_stage", (("k", "text"), ("v", "bigint")))
    merge = merge_from_stage(stage.name, "rows_", [("k", "text")], [("v", "bigint")])
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE rows_ (k text PRIMARY KEY, v bigint)")
            await conn.execute("INSERT INTO rows_ VALUES ('a', 0)")
            async with conn.transaction():
                await conn.execute(stage.ddl)
                for value in (1, 2):
                    await conn.copy_records_to_table(stage.name, records=[("a", value)], columns=["k", "v"])
                    await conn.execute(merge)
                assert await conn.fetchval(f"SELECT count(*) FROM {stage.name}") == 0
            assert await conn.fetchval("SELECT v FROM rows_") == 2
    finally:
        await pool.close()
