"""Anchors: what the broker and the database do with the same records and no service.

A figure alone says little on a shared two-core machine whose speed moves by 2x between
runs; the same records through bare aiokafka and bare PostgreSQL, in the same session on
the same broker and database, give each figure a ratio that moves far less.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from payments_platform.kafka import client_options

if TYPE_CHECKING:
    from common import Scratch

Records = list[tuple[bytes, bytes]]
BATCH = 2000  # rows per transaction: the services' consume batch
# Anchors are rates: the first 200,000 records give a steady one without making a 1M-event
# run spend minutes inserting rows a second time.
SAMPLE = 200_000


async def until_writable(bootstrap: str, topics: dict[str, int], timeout: float = 30) -> None:
    """New partitions answer NotLeader for a while after the metadata names a leader;
    a produce timed then would time aiokafka's retries. ListOffsets goes to the leader
    too: once every partition answers it, the timing can start."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(name, p) for name, count in topics.items() for p in range(count)]
        deadline = time.monotonic() + timeout
        while True:
            try:
                await consumer.end_offsets(parts)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def produce_batched(bootstrap: str, topic: str, partitions: int, records: Records) -> float:
    """Records to `topic` in batches built per keyed partition, acks=all; seconds taken."""
    producer = AIOKafkaProducer(
        **client_options(bootstrap), acks="all", max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        by_partition: dict[int, Records] = defaultdict(list)
        for key, value in records:
            by_partition[(murmur2(key) & 0x7FFFFFFF) % partitions].append((key, value))
        pending = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            if len(pending) > 50:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def consume_raw(bootstrap: str, topics: dict[str, int]) -> tuple[int, float]:
    """Every record of `topics` (name -> partitions) from offset 0, not decoded."""
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap),
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(name, p) for name, count in topics.items() for p in range(count)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        total = sum(ends.values())
        seen = 0
        started = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            seen += sum(len(v) for v in batches.values())
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


TABLE = "bench_anchor"


def _rows(records: Records) -> list[tuple[int, str, str]]:
    return [(i, key.decode(), value.decode()) for i, (key, value) in enumerate(records)]


async def _fresh_table(conn: asyncpg.Connection) -> None:
    await conn.execute(
        f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id bigint PRIMARY KEY, key text, payload jsonb)"
    )


async def pg_unnest(dsn: str, records: Records) -> float:
    """Rows per second of `INSERT ... SELECT FROM unnest(...)`, one transaction per batch."""
    rows = _rows(records)
    conn = await asyncpg.connect(dsn)
    try:
        await _fresh_table(conn)
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            chunk = rows[i : i + BATCH]
            await conn.execute(
                f"INSERT INTO {TABLE} (id, key, payload) "
                "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]::jsonb[])",
                [r[0] for r in chunk],
                [r[1] for r in chunk],
                [r[2] for r in chunk],
            )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.close()


async def pg_copy(dsn: str, records: Records) -> float:
    """Rows per second of COPY (binary, asyncpg), one transaction per batch."""
    rows = _rows(records)
    conn = await asyncpg.connect(dsn)
    try:
        await _fresh_table(conn)
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            await conn.copy_records_to_table(
                TABLE, records=rows[i : i + BATCH], columns=["id", "key", "payload"]
            )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.close()


async def produce_to_new_topic(bootstrap: str, topic: str, partitions: int, records: Records) -> float:
    """The batched produce anchor, into a topic of its own (nobody consumes it)."""
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a new partition takes writes once it has a leader
            described = await admin.describe_topics([topic])
            if described[0]["partitions"] and all(p["leader"] >= 0 for p in described[0]["partitions"]):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    await until_writable(bootstrap, {topic: partitions})
    return await produce_batched(bootstrap, topic, partitions, records)


async def all_anchors(
    scratch: Scratch,
    records: Records,
    topics: dict[str, int],
    partitions: int,
    produce_s: float | None = None,
) -> dict[str, float]:
    """The four anchors, in records (or rows) per second: bare aiokafka reading `topics`
    (what the figure's service consumed) from offset 0, the same records produced in
    batches (or `produce_s`, the figure's own timed load of them), and inserted as rows
    with unnest and with COPY into the run's database."""
    seen, seconds = await consume_raw(scratch.bootstrap, topics)
    if produce_s is not None:  # the figure loaded its input this way, nothing else running
        produced = len(records) / produce_s
    else:
        topic = scratch.registry.prefix + "anchor"
        scratch.extra_topics = [topic]
        produced = len(records[:SAMPLE]) / await produce_to_new_topic(
            scratch.bootstrap, topic, partitions, records[:SAMPLE]
        )
    records = records[:SAMPLE]
    return {
        "kafka_consume": seen / seconds,
        "kafka_produce": produced,
        "pg_unnest": await pg_unnest(scratch.dsn, records),
        "pg_copy": await pg_copy(scratch.dsn, records),
    }
