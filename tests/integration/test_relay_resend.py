"""The relay's at-least-once contract, from the consumer's side: an outbox row published
again (the relay died after Kafka's acknowledgement, before its delete committed, and
the next lock holder sends it once more) reaches the topic a second time with the same
event id, and a consumer on the shared block applies it once - in the same batch or
in a much later one.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from effects_consumer import effects_consumer, install_effects
from kafka_tools import eventually, read_all
from payments_contracts.invoices import InvoiceRegistered, InvoiceRegisteredPayload
from payments_contracts.money import Money
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import Outbox, OutboxRelay

pytestmark = pytest.mark.integration


async def test_a_re_sent_outbox_row_has_no_second_effect(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    pool = await open_pool(database_url, "resend", install=install_effects)
    relay = OutboxRelay(pool, kafka_bootstrap, service="resend")
    stopping = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stopping))
    consumer = effects_consumer(
        pool, kafka_bootstrap, topics, topics.invoices, name="resend", group_id=f"{topics.prefix}resend"
    )
    consuming = asyncio.create_task(consumer.run())
    events = [invoice_synced(f"INV-{i}") for i in range(20)]

    async def write(messages: list[InvoiceRegistered]) -> None:
        outbox = Outbox(topics)
        for message in messages:
            outbox.publish(message)
        async with pool.acquire() as conn, conn.transaction():
            await outbox.write(conn)
        relay.wake()

    async def effects() -> Counter[str]:
        return Counter(str(r["event_id"]) for r in await pool.fetch("SELECT event_id FROM effects"))

    try:
        # First send, with a re-send of three rows in the same relay batch.
        await write([*events, *events[:3]])
        await eventually(effects, lambda e: len(e) == len(events), what="first effects")
        # A re-send of five rows long after their first copy was applied.
        await write(events[5:10])
        on_topic = await eventually(
            lambda: read_all(kafka_bootstrap, topics.invoices.name),
            lambda records: len(records) == len(events) + 3 + 5,
            what="every copy on the topic",
        )
        await eventually(
            lambda: pool.fetchval(
                "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE consumer = 'resend'"
            ),
            lambda consumed: consumed == len(on_topic),
            what="the consumer past every copy",
        )
        applied = await effects()
    finally:
        consumer.stop()
        stopping.set()
        await asyncio.gather(consuming, relaying)
        await pool.close()

    copies = Counter(dict(r.headers)["event_id"].decode() for r in on_topic)
    assert sorted(copies.values()) == [1] * 12 + [2] * 8, "the re-sent rows are on the topic twice"
    assert applied == Counter({str(e.event_id): 1 for e in events}), "each event applied exactly once"


def invoice_synced(number: str) -> InvoiceRegistered:
    return InvoiceRegistered.originating(
        producer="invoice-sync",
        account_id=f"ACC-{number[-1]}",
        payload=InvoiceRegisteredPayload(
            invoice_number=number,
            erp_version=1,
            provider_invoice_id=f"pi-{number}",
            amount=Money(amount_minor=125000, currency="USD"),
        ),
    )
