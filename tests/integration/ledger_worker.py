"""A minimal service built on the consume/outbox block, run as an OS process by tests.

For each ERP invoice document it records one effect row (no unique constraint, so a
doubled effect would show) and publishes one InvoiceSynced caused by it. CRASH_POINT
and CRASH_ON_BATCH make it die (os._exit, as a SIGKILL would) at a chosen step:
inside the transaction, after the commit, or after Kafka acknowledged the outbox but
before the rows were deleted.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import asyncpg

from payments_contracts.invoices import InvoiceSynced, InvoiceSyncedPayload
from payments_contracts.money import Money
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import Delivery, OutboxRelay, Transaction, TransactionalConsumer

CRASH_POINT = os.environ.get("CRASH_POINT", "")
CRASH_ON_BATCH = int(os.environ.get("CRASH_ON_BATCH", "0"))
POISON = "POISON"
batches = 0


def crash_if(point: str) -> None:
    if point == CRASH_POINT and batches == CRASH_ON_BATCH:
        os._exit(137)


async def install(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS effects (event_id uuid NOT NULL, account_id text, invoice_number text)"
    )


async def handle(deliveries: Sequence[Delivery], tx: Transaction) -> None:
    global batches
    batches += 1
    for d in deliveries:
        doc = d.message.payload
        if doc.invoice_number == POISON:
            raise ValueError("this document can never be applied")
        await tx.connection.execute(
            "INSERT INTO effects VALUES ($1, $2, $3)",
            d.message.event_id,
            d.message.account_id,
            doc.invoice_number,
        )
        total = Money.from_decimal(doc.total, doc.currency)
        tx.outbox.publish(
            InvoiceSynced.following(
                d.message,
                producer="ledger-worker",
                payload=InvoiceSyncedPayload(
                    invoice_number=doc.invoice_number,
                    erp_version=doc.version,
                    order_number=doc.order_number,
                    po_number=doc.po_number,
                    invoice_date=doc.invoice_date,
                    due_date=doc.due_date,
                    total=total,
                    open_amount=Money.from_decimal(doc.open_amount, doc.currency),
                    erp_status=doc.status,
                    billing_country=doc.billing_country,
                    posted_payments=[],
                ),
            )
        )
    crash_if("in_transaction")


class CrashingRelay(OutboxRelay):
    async def _publish_once(self, conn, producer):  # type: ignore[no-untyped-def]
        rows = await conn.fetch("SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT 2000")
        if rows and CRASH_POINT == "after_publish" and batches >= CRASH_ON_BATCH:
            for r in rows:
                await (await producer.send(r["topic"], value=r["value"], key=r["key"]))
            os._exit(137)
        return await super()._publish_once(conn, producer)


async def main() -> None:
    bootstrap = os.environ["PAYMENTS_KAFKA_BOOTSTRAP"]
    registry = TopicRegistry(os.environ["PAYMENTS_TOPIC_PREFIX"])
    pool = await open_pool(os.environ["PAYMENTS_DATABASE_URL"], "ledger", install=install)
    relay = CrashingRelay(pool, bootstrap, service="ledger-worker", idle_poll_s=0.05)

    def committed() -> None:
        crash_if("after_commit")
        relay.wake()

    consumer = TransactionalConsumer(
        service="ledger-worker",
        name="ledger",
        registry=registry,
        topics=[registry.erp_invoices],
        pool=pool,
        bootstrap=bootstrap,
        handle=handle,
        on_commit=committed,
        batch_size=int(os.environ.get("PAYMENTS_CONSUMER_BATCH_SIZE", "50")),
    )
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run(stopping))]
    print("worker started", file=sys.stderr, flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
