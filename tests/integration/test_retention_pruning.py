"""Retention on real PostgreSQL (and Kafka): expired dedupe records are pruned in bounded
batches, newer ones are kept, and a repeat inside the window still has no second effect."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from effects_consumer import effects_consumer, install_effects
from kafka_tools import eventually, produce
from payments_contracts import Envelope
from payments_contracts.invoices import InvoiceClosed, InvoiceClosedPayload
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.retention import PRUNED, Pruner, Retained, RetentionSettings, messaging_tables

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


async def _install_parcels(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS parcels (
            id        integer     PRIMARY KEY,
            sent_at   timestamptz NOT NULL DEFAULT now(),
            delivered boolean     NOT NULL
        )
        """
    )


def _pruned(service: str, table: str) -> float:
    return PRUNED.labels(service, table)._value.get()


async def _backdate(
    pool: asyncpg.Pool, table: str, stamp: str, by: timedelta, where: str = "true", *args: object
) -> None:
    await pool.execute(f"UPDATE {table} SET {stamp} = {stamp} - $1::interval WHERE {where}", by, *args)


async def test_rows_older_than_the_window_are_pruned_in_bounded_batches_and_newer_ones_kept(database_url):
    pool = await open_pool(database_url, "svc", install=_install_parcels)
    service = f"svc-{uuid.uuid4().hex[:6]}"
    try:
        old_ids = [uuid.uuid4() for _ in range(17)]
        new_ids = [uuid.uuid4() for _ in range(8)]
        await pool.execute(
            "INSERT INTO processed_events (consumer, event_id) SELECT 'c', unnest($1::uuid[])",
            old_ids + new_ids,
        )
        await _backdate(
            pool, "processed_events", "processed_at", 2 * HOUR, "event_id = ANY($2::uuid[])", old_ids
        )
        await pool.execute(
            "UPDATE processed_events SET processed_at = now() - interval '59 minutes' WHERE event_id = $1",
            new_ids[0],  # just inside the window
        )
        await pool.execute(
            "INSERT INTO outbox_unpublishable (id, topic, key, value, headers, created_at, reason)"
            " SELECT i, 't', NULL, 'x', '{}', now(), 'too large' FROM generate_series(1, 3) i"
        )
        await _backdate(pool, "outbox_unpublishable", "set_aside_at", 2 * HOUR, "id < 3")
        await pool.execute(
            "INSERT INTO parcels (id, delivered) SELECT i, i % 2 = 0 FROM generate_series(1, 6) i"
        )
        await _backdate(pool, "parcels", "sent_at", 2 * HOUR)
        settings = RetentionSettings(processed_events=HOUR, unpublishable=HOUR)
        pruner = Pruner(
            pool,
            service=service,
            tables=[
                *messaging_tables(settings),
                Retained("parcels", "sent_at", HOUR, keep_while="NOT r.delivered"),
            ],
            batch_size=5,
        )

        assert await pruner.prune_once() == 5 + 2 + 3  # one bounded batch per table
        assert await pool.fetchval("SELECT count(*) FROM processed_events") == 25 - 5
        assert await pruner.prune_all() == {"processed_events": 12, "outbox_unpublishable": 0, "parcels": 0}

        kept = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM processed_events")}
        assert kept == set(new_ids)
        assert [r["id"] for r in await pool.fetch("SELECT id FROM outbox_unpublishable")] == [3]
        assert sorted(r["id"] for r in await pool.fetch("SELECT id FROM parcels")) == [1, 3, 5]
        assert _pruned(service, "processed_events") == 17
        assert _pruned(service, "outbox_unpublishable") == 2
        assert _pruned(service, "parcels") == 3
    finally:
        await pool.close()


async def test_two_instances_share_the_work_and_delete_each_row_once(database_url):
    pool = await open_pool(database_url, "svc", size=4)
    try:
        await pool.execute(
            "INSERT INTO processed_events (consumer, event_id, processed_at)"
            " SELECT 'c', gen_random_uuid(), now() - interval '2 hours' FROM generate_series(1, 5000)"
        )
        tables = messaging_tables(RetentionSettings(processed_events=HOUR))
        instances = [Pruner(pool, service="svc", tables=tables, batch_size=100) for _ in range(2)]
        first, second = await asyncio.gather(*(p.prune_all() for p in instances))
        assert first["processed_events"] + second["processed_events"] == 5000
        assert first["processed_events"] > 0 and second["processed_events"] > 0
        assert await pool.fetchval("SELECT count(*) FROM processed_events") == 0
    finally:
        await pool.close()


async def test_the_background_pruner_keeps_pruning_until_stopped(database_url):
    pool = await open_pool(database_url, "svc")
    pruner = Pruner(
        pool,
        service="svc",
        tables=messaging_tables(RetentionSettings(processed_events=timedelta(seconds=1))),
        interval_s=0.1,
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(pruner.run(stopping))
    try:
        for _ in range(2):
            await pool.execute(
                "INSERT INTO processed_events (consumer, event_id) SELECT 'c', gen_random_uuid()"
                " FROM generate_series(1, 50)"
            )
            await eventually(
                lambda: pool.fetchval("SELECT count(*) FROM processed_events"),
                lambda n: n == 0,
                timeout=10,
                what="expired event ids pruned",
            )
        assert pruner.ready
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await pool.close()


def _closed(account: str, number: str) -> Envelope:
    return InvoiceClosed.originating(
        producer="test",
        account_id=account,
        payload=InvoiceClosedPayload(invoice_number=number, erp_version=1, reason="cancelled"),
    )


async def test_a_message_published_again_inside_the_window_has_no_second_effect(
    kafka_bootstrap, database_url, topics: TopicRegistry
):
    pool = await open_pool(database_url, "downstream", install=install_effects)
    consumer = effects_consumer(pool, kafka_bootstrap, topics, topics.invoices, name="effects")
    pruner = Pruner(
        pool, service="downstream", tables=messaging_tables(RetentionSettings(processed_events=HOUR))
    )
    running = asyncio.create_task(consumer.run())

    async def effects_of(event: Envelope) -> int:
        return await pool.fetchval("SELECT count(*) FROM effects WHERE event_id = $1", event.event_id)

    try:
        early, recent = _closed("ACC-R", "INV-1"), _closed("ACC-R", "INV-2")
        await produce(kafka_bootstrap, topics.invoices.name, [early, recent])
        await eventually(
            lambda: pool.fetchval("SELECT count(*) FROM effects"), lambda n: n == 2, what="both applied"
        )
        await _backdate(pool, "processed_events", "processed_at", 2 * HOUR, "event_id = $2", early.event_id)
        assert await pruner.prune_all() == {"processed_events": 1, "outbox_unpublishable": 0}

        # The same messages published again (a relay re-sending after a crash): the one
        # still inside its window is recognised; the pruned one is taken for new, which is
        # why a window must outlive the longest time a repeat can take to arrive.
        await produce(kafka_bootstrap, topics.invoices.name, [recent, early])
        await eventually(lambda: effects_of(early), lambda n: n == 2, what="the pruned id applied again")
        assert await effects_of(recent) == 1
        stored = await pool.fetchval(
            "SELECT sum(next_offset) FROM consumer_offsets WHERE consumer = 'effects'"
        )
        assert stored == 4
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 30)
        await pool.close()
