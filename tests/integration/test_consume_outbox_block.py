"""The transactional consume/outbox block on real Kafka and PostgreSQL.

A worker process built on the block is killed between every pair of steps (inside
the transaction, after the commit, after Kafka acknowledged the outbox but before
it was cleared) and at random moments; after restarts every input has exactly one
effect and exactly one distinct output event, and a downstream consumer built on
the same block applies each output once.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from effects_consumer import count_effects, effects_consumer, install_effects
from erp_invoices import erp_invoice
from kafka_tools import eventually, produce, read_all
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import Delivery, Transaction, TransactionalConsumer
from payments_platform.messaging.offsets import rewind
from processes import Process

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("ledger_worker.py")


def stream(n: int, accounts: int = 7) -> list[ErpInvoiceUpserted]:
    return [erp_invoice(f"ACC-{i % accounts}", f"INV-{i:05d}", total="1250.00") for i in range(n)]


class Worker(Process):
    def __init__(self, bootstrap: str, database_url: str, topics: TopicRegistry) -> None:
        env = {
            **os.environ,
            "PAYMENTS_KAFKA_BOOTSTRAP": bootstrap,
            "PAYMENTS_DATABASE_URL": database_url,
            "PAYMENTS_TOPIC_PREFIX": topics.prefix,
        }
        super().__init__([sys.executable, str(WORKER)], env)

    async def exited(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        process = self.process
        return await eventually(
            lambda: asyncio.sleep(0, process.poll()),
            lambda code: code is not None,
            timeout=timeout,
            what="the worker to crash",
        )


async def effects(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS distinct_n FROM ledger.effects"
        )
        return (row["n"], row["distinct_n"]) if row else (0, 0)
    except asyncpg.UndefinedTableError:
        return (0, 0)
    finally:
        await conn.close()


async def wait_for_effects(database_url: str, expected: int, timeout: float = 60.0) -> None:
    await eventually(
        lambda: effects(database_url),
        lambda r: r[0] >= expected,
        timeout=timeout,
        what=f"{expected} effects",
    )


async def outputs_by_cause(bootstrap: str, topics: TopicRegistry, expected: int) -> dict[str, set[str]]:
    """Distinct output event ids per causing input, once the relay published them all."""

    async def collect() -> dict[str, set[str]]:
        by_cause: dict[str, set[str]] = {}
        for record in await read_all(bootstrap, topics.invoices.name):
            message = topics.invoices.decoder.validate_json(record.value)
            by_cause.setdefault(str(message.causation_id), set()).add(str(message.event_id))
        return by_cause

    return await eventually(collect, lambda c: len(c) >= expected, timeout=60, what="all outputs")


async def apply_downstream(bootstrap: str, topics: TopicRegistry, database_url: str, expected: int) -> int:
    """Consume the outputs with the same block; count the effects it applied."""
    pool = await open_pool(database_url, "downstream", install=install_effects)
    consumer = effects_consumer(pool, bootstrap, topics, topics.invoices, name="downstream")
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(
            lambda: count_effects(pool), lambda n: n[0] >= expected, timeout=60, what="downstream effects"
        )
        consumer.stop()
        await task
        return (await count_effects(pool))[0]
    finally:
        if not task.done():
            task.cancel()
        await pool.close()


@pytest.mark.parametrize("crash_point", ["in_transaction", "after_commit", "after_publish"])
async def test_a_crash_between_any_two_steps_loses_and_doubles_nothing(
    crash_point: str, kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    inputs = stream(400)
    redelivered = inputs[:40]  # the same messages delivered a second time
    await produce(kafka_bootstrap, topics.erp_invoices.name, [*inputs, *redelivered])
    worker = Worker(kafka_bootstrap, database_url, topics)

    worker.start({"CRASH_POINT": crash_point, "CRASH_ON_BATCH": "3"})
    assert await worker.exited() == 137
    worker.start()
    try:
        await wait_for_effects(database_url, len(inputs))
        by_cause = await outputs_by_cause(kafka_bootstrap, topics, len(inputs))
    finally:
        worker.kill()

    assert await effects(database_url) == (len(inputs), len(inputs))
    assert set(by_cause) == {str(m.event_id) for m in inputs}
    assert all(len(ids) == 1 for ids in by_cause.values()), "an input produced two distinct events"
    assert await apply_downstream(kafka_bootstrap, topics, database_url, len(inputs)) == len(inputs)


async def test_killed_at_random_moments_and_restarted_every_input_has_one_effect(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    inputs = stream(3000)
    await produce(kafka_bootstrap, topics.erp_invoices.name, inputs)
    worker = Worker(kafka_bootstrap, database_url, topics)
    rng = random.Random(7)
    for _ in range(4):
        worker.start()
        await asyncio.sleep(rng.uniform(1.5, 3.0))  # let it get somewhere, then pull the plug
        worker.kill()
    worker.start()
    try:
        await wait_for_effects(database_url, len(inputs), timeout=90)
        by_cause = await outputs_by_cause(kafka_bootstrap, topics, len(inputs))
    finally:
        worker.kill()
    assert await effects(database_url) == (len(inputs), len(inputs))
    assert len(by_cause) == len(inputs)
    assert all(len(ids) == 1 for ids in by_cause.values())


async def test_unprocessable_messages_go_to_the_dead_letter_topic_and_the_rest_flows(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    good = stream(30)
    poison = erp_invoice("ACC-1", "POISON", total="1250.00")
    card = b'{"oops": "4111 1111 1111 1111"}'
    raw = [(b"ACC-1", b"{not json"), (b"ACC-2", card), (b"ACC-3", b'{"type": "erp.unknown"}')]
    await produce(kafka_bootstrap, topics.erp_invoices.name, [*good[:15], *raw, poison, *good[15:]])
    worker = Worker(kafka_bootstrap, database_url, topics)
    worker.start()
    try:
        await wait_for_effects(database_url, len(good))
        dead = await eventually(
            lambda: read_all(kafka_bootstrap, topics.erp_invoices.dead_letter),
            lambda records: len(records) >= 4,
            what="four dead letters",
        )
    finally:
        worker.kill()

    assert await effects(database_url) == (len(good), len(good))
    headers = [dict((k, v.decode()) for k, v in r.headers) for r in dead]
    assert {h["dlq.source.topic"] for h in headers} == {topics.erp_invoices.name}
    assert all(h["dlq.service"] == "ledger-worker" and h["dlq.source.offset"].isdigit() for h in headers)
    errors = " | ".join(h["dlq.error"] for h in headers)
    assert "invalid message" in errors and "can never be applied" in errors
    assert all(b"4111" not in r.value for r in dead), "a card number reached the dead-letter topic"
    assert len(dead) == 4


async def test_a_new_consumer_resumes_from_the_offsets_in_its_database_not_from_kafka(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    first = stream(50)
    await produce(kafka_bootstrap, topics.erp_invoices.name, first)
    worker = Worker(kafka_bootstrap, database_url, topics)
    worker.start()
    try:
        await wait_for_effects(database_url, 50)
    finally:
        worker.kill()
    conn = await asyncpg.connect(database_url)
    try:
        # Wipe the effects and offsets as a rebuild would: the same consumer group must
        # then replay from the beginning, because the database says nothing was applied.
        await conn.execute("TRUNCATE ledger.effects, ledger.consumer_offsets, ledger.processed_events")
    finally:
        await conn.close()
    worker.start()
    try:
        await wait_for_effects(database_url, 50)
        second = [erp_invoice("ACC-9", f"LATE-{uuid.uuid4().hex[:6]}", total="1250.00") for _ in range(5)]
        await produce(kafka_bootstrap, topics.erp_invoices.name, second)
        await wait_for_effects(database_url, 55)
    finally:
        worker.kill()
    assert await effects(database_url) == (55, 55)


async def test_a_running_consumer_reads_again_what_the_database_lost_instead_of_skipping_it(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    """A database that loses committed batches (a crash without durable commits, a restore
    from backup, a failover) must never make a consumer store offsets past them: it seeks
    back and applies them again, with no rebalance to tell it."""
    first = stream(50)
    await produce(kafka_bootstrap, topics.erp_invoices.name, first)
    worker = Worker(kafka_bootstrap, database_url, topics)
    worker.start()
    try:
        await wait_for_effects(database_url, 50)
        conn = await asyncpg.connect(database_url)
        try:
            # Everything the worker committed is gone, as after restoring an empty backup.
            await conn.execute("TRUNCATE ledger.effects, ledger.processed_events")
            await conn.execute("UPDATE ledger.consumer_offsets SET next_offset = 0")
        finally:
            await conn.close()
        second = [erp_invoice("ACC-9", f"AFTER-{i}", total="1250.00") for i in range(5)]
        await produce(kafka_bootstrap, topics.erp_invoices.name, second)
        await wait_for_effects(database_url, 55)
        await asyncio.sleep(1.0)  # nothing more may arrive
    finally:
        worker.kill()
    assert await effects(database_url) == (55, 55)


class LosesItsDatabaseOnce(TransactionalConsumer):
    """Loses every committed batch at the start of its `lose_on`-th transaction, as a
    restore from an empty backup would, at the moment the next batch is already fetched."""

    lose_on = 3
    transactions = 0
    lost = False  # the loss ran (a statement that failed would leave nothing to refill)

    async def _lock_offsets(
        self, conn: asyncpg.Connection, records: Sequence[object]
    ) -> dict[tuple[str, int], int]:
        self.transactions += 1
        if self.transactions == self.lose_on:
            await conn.execute("TRUNCATE effects, processed_events")
            await conn.execute("UPDATE consumer_offsets SET next_offset = 0")
            self.lost = True
        return await super()._lock_offsets(conn, records)  # type: ignore[arg-type]


async def test_batches_read_ahead_of_a_gap_are_dropped_and_read_again(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    """The consumer decodes batch N+1 while batch N is in the database. When a batch finds
    a gap and seeks back, the batch fetched ahead of that seek must not be applied: it
    starts past the gap too, and applying it would store offsets past records never
    applied."""
    await every_record_applied_once(kafka_bootstrap, database_url, topics, LosesItsDatabaseOnce)


class RebalancedWhileRefilling(LosesItsDatabaseOnce):
    """Loses its database as `LosesItsDatabaseOnce` does, and the group rebalances while
    the gap's records are being read again (a heartbeat late on a loaded machine, a
    metadata change). The new assignment's stored offsets come back slowly (a loaded
    database): the batch in hand is applied before `_resume` seeks.

    Until `_resume` seeks, aiokafka positions a newly assigned partition at Kafka's
    committed offset, the mirror kept for lag tooling, which is ahead of a database that
    lost commits; and `getmany` hands records over as soon as the assignment is set,
    while the rebalance listener still runs. That is how a batch starting past the
    offset sought back to reached the database under load."""

    rebalanced_at: int | None = None

    def _refill(self, gaps: dict[tuple[str, int], int]) -> None:
        if gaps and self.rebalanced_at is None and self._consumer is not None:
            self.rebalanced_at = self.transactions
            self._consumer._coordinator.request_rejoin()
        super()._refill(gaps)

    async def _resume(self, assigned: set[TopicPartition]) -> None:
        if self.rebalanced_at is not None:
            deadline = asyncio.get_running_loop().time() + 15
            while self.transactions == self.rebalanced_at and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        await super()._resume(assigned)


async def test_a_rebalance_while_reading_a_gap_again_never_skips_the_records_sought_back_to(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    """The block must not store an offset past a record it has not applied, whatever
    position aiokafka hands records over from: a batch that starts past the stored offset
    after a refill is accepted only where the broker no longer holds the records between
    (its log start offset is past them), never merely because the consumer sought back."""
    consumer = await every_record_applied_once(
        kafka_bootstrap, database_url, topics, RebalancedWhileRefilling
    )
    assert consumer.rebalanced_at is not None


async def every_record_applied_once(
    kafka_bootstrap: str,
    database_url: str,
    topics: TopicRegistry,
    kind: type[LosesItsDatabaseOnce],
) -> LosesItsDatabaseOnce:
    documents = stream(600, accounts=1)  # one key: one partition, batches in a row
    await produce(kafka_bootstrap, topics.erp_invoices.name, documents)
    pool = await open_pool(database_url, "read_ahead", install=install_effects)
    consumer = effects_consumer(
        pool, kafka_bootstrap, topics, topics.erp_invoices, name="read-ahead", kind=kind, batch_size=50
    )
    assert isinstance(consumer, LosesItsDatabaseOnce)
    running = asyncio.create_task(consumer.run())
    try:
        counts = await eventually(
            lambda: applied(pool), lambda c: c[2] >= 600, timeout=60, what="every offset stored"
        )
        assert consumer.lost and consumer.transactions > LosesItsDatabaseOnce.lose_on
        assert counts == (600, 600, 600)
        assert {r["event_id"] for r in await pool.fetch("SELECT event_id FROM effects")} == {
            d.event_id for d in documents
        }
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 30)
        await pool.close()
    return consumer


async def applied(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """(effects, distinct event ids, the highest next offset stored)."""
    offset = await pool.fetchval("SELECT max(next_offset) FROM consumer_offsets") or 0
    return (*await count_effects(pool), int(offset))


class SlowToResume(TransactionalConsumer):
    """Reads its stored offsets slowly on assignment (a loaded database): records handed
    over meanwhile come from wherever aiokafka placed the partition, Kafka's committed
    offset (the mirror kept for lag tooling)."""

    async def _resume(self, assigned: set[TopicPartition]) -> None:
        await asyncio.sleep(3)
        await super()._resume(assigned)


async def test_a_database_that_lost_every_offset_is_refilled_from_the_beginning_not_from_kafkas_mirror(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    """A restore from a backup taken before a partition's first commit leaves no stored
    offset at all: the consumer must read that partition from its first record, even when
    Kafka's committed offset (mirrored from the batches the database lost) is further on
    and aiokafka hands records over from there before the consumer seeks."""
    documents = stream(200, accounts=1)
    await produce(kafka_bootstrap, topics.erp_invoices.name, documents)
    pool = await open_pool(database_url, "lost_offsets", install=install_effects)

    async def run_to_the_end(kind: type[TransactionalConsumer]) -> tuple[int, int, int]:
        consumer = effects_consumer(
            pool, kafka_bootstrap, topics, topics.erp_invoices, name="lost-offsets", kind=kind, batch_size=50
        )
        running = asyncio.create_task(consumer.run())
        try:
            return await eventually(
                lambda: applied(pool), lambda c: c[2] >= 200, timeout=60, what="every offset stored"
            )
        finally:
            consumer.stop()
            await asyncio.wait_for(running, 30)

    try:
        assert await run_to_the_end(TransactionalConsumer) == (200, 200, 200)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            mirrored = await admin.list_consumer_group_offsets(f"lost-offsets.{topics.prefix}lost-offsets")
        finally:
            await admin.close()
        assert max(o.offset for o in mirrored.values()) > 0  # Kafka's mirror is ahead of what follows
        # Everything the first run committed is gone, its offsets' rows too.
        await pool.execute("TRUNCATE effects, processed_events, consumer_offsets")
        assert await run_to_the_end(SlowToResume) == (200, 200, 200)
    finally:
        await pool.close()


async def test_records_retention_deleted_are_passed_over_where_the_log_now_starts(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    """The one gap that is excused: retention deleted records a consumer had not read yet
    (it was away longer than the topic keeps them). The broker's log start offset shows
    they are gone, so the consumer goes on from there instead of seeking back forever,
    whether its stored offset is behind the log start or it has stored none."""
    documents = stream(100, accounts=1)
    await produce(kafka_bootstrap, topics.erp_invoices.name, documents)
    partition = (await read_all(kafka_bootstrap, topics.erp_invoices.name))[0].partition
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topics.erp_invoices.name, partition): RecordsToDelete(60)})
    finally:
        await admin.close()

    async def install(conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS applied (consumer text, event_id uuid NOT NULL)")

    pool = await open_pool(database_url, "retention", install=install)
    try:
        await rewind(pool, "behind", {(topics.erp_invoices.name, partition): 20})
        consumers = []
        for name in ("behind", "new"):

            async def handle(deliveries: Sequence[Delivery], tx: Transaction, name: str = name) -> None:
                await tx.connection.executemany(
                    "INSERT INTO applied VALUES ($1, $2)", [(name, d.message.event_id) for d in deliveries]
                )

            consumers.append(
                TransactionalConsumer(
                    service=name,
                    name=name,
                    registry=topics,
                    topics=[topics.erp_invoices],
                    pool=pool,
                    bootstrap=kafka_bootstrap,
                    handle=handle,
                    batch_size=10,
                )
            )
        running = [asyncio.create_task(c.run()) for c in consumers]
        try:
            await eventually(
                lambda: pool.fetch("SELECT consumer, next_offset FROM consumer_offsets"),
                lambda rows: (
                    sorted((r["consumer"], r["next_offset"]) for r in rows) == [("behind", 100), ("new", 100)]
                ),
                timeout=60,
                what="both consumers at the end",
            )
        finally:
            for consumer in consumers:
                consumer.stop()
            await asyncio.wait_for(asyncio.gather(*running), 30)
        for name in ("behind", "new"):
            rows = await pool.fetch("SELECT event_id FROM applied WHERE consumer = $1", name)
            assert sorted(r["event_id"] for r in rows) == sorted(d.event_id for d in documents[60:])
    finally:
        await pool.close()
