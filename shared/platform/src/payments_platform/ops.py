"""Operator actions every service offers: per-partition lag, re-driving dead letters, and
the outbox rows Kafka refused for good (set aside) and their re-publishing.

Lag is measured against the offsets a consumer stored in its own database (the truth:
docs/product.md, "No lost and no doubled effects"), not Kafka's committed offsets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from payments_contracts.topics import TopicRegistry
from payments_platform.kafka import client_options

Progress = Callable[[int, int], None]
# Which consumers' lag an operator (and the consumer_lag gauge) looks at: consumer name ->
# topic names (with the prefix). Each service states its own; see `partition_lag`.
LagScope = Callable[[asyncpg.Pool], Awaitable[dict[str, list[str]]]]


def fixed_scope(consumers: dict[str, list[str]]) -> LagScope:
    """The scope of a service whose consumers and their topics never change."""

    async def scope(_: asyncpg.Pool) -> dict[str, list[str]]:
        return consumers

    return scope


@dataclass(frozen=True)
class PartitionLag:
    consumer: str
    topic: str
    partition: int
    next_offset: int
    end_offset: int

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset)


async def kafka_bounds(
    bootstrap: str, topics: Iterable[str]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """Beginning and end offsets of every partition of `topics`."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False)
    try:
        await consumer.start()  # inside: a start that fails still closes the client
        # A consumer that subscribes to nothing has no partition metadata until asked.
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(t, p)
            for t in sorted(set(topics))
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not partitions:
            return {}, {}
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return (
        {(tp.topic, tp.partition): o for tp, o in begins.items()},
        {(tp.topic, tp.partition): o for tp, o in ends.items()},
    )


async def partition_lag(
    db: asyncpg.Pool | asyncpg.Connection, bootstrap: str, consumers: dict[str, list[str]] | None = None
) -> list[PartitionLag]:
    """Lag of each consumer on each partition of its topics (`consumers`: name -> topic
    names; None: every consumer with stored offsets in this schema, on their topics).
    A partition the consumer has not stored an offset for counts from its beginning."""
    rows = await db.fetch("SELECT consumer, topic, partition, next_offset FROM consumer_offsets")
    stored = {(r["consumer"], r["topic"], r["partition"]): r["next_offset"] for r in rows}
    if consumers is None:
        consumers = {}
        for consumer, topic, _ in stored:
            consumers.setdefault(consumer, [])
            if topic not in consumers[consumer]:
                consumers[consumer].append(topic)
    begins, ends = await kafka_bounds(bootstrap, {t for ts in consumers.values() for t in ts})
    result = []
    for consumer, topics in sorted(consumers.items()):
        for (topic, partition), end in sorted(ends.items()):
            if topic in topics:
                next_offset = stored.get((consumer, topic, partition), begins[(topic, partition)])
                result.append(PartitionLag(consumer, topic, partition, next_offset, end))
    return result


@dataclass(frozen=True)
class Redriven:
    examined: int
    redriven: int


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as the re-drive sees it: where it is, where it came from, and why."""

    topic: str
    partition: int
    offset: int
    headers: dict[str, str]

    @property
    def source(self) -> str:
        h = self.headers
        return f"{h.get('dlq.source.topic')}:{h.get('dlq.source.partition')}:{h.get('dlq.source.offset')}"

    @property
    def error(self) -> str:
        reason = self.headers.get("dlq.reason")
        error = self.headers.get("dlq.error", "")
        return f"[{reason}] {error}" if reason else error


async def redrive_dead_letters(
    bootstrap: str,
    registry: TopicRegistry,
    topic: str,
    *,
    service: str | None,
    operator: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_message: Callable[[DeadLetter], None] | None = None,
) -> Redriven:
    """Publish dead letters of `topic` back to the topic they came from, after a fix.

    `topic` is a source topic (`invoices`) or its dead-letter topic (`invoices.dlq`),
    without the deployment prefix. Only dead letters of `service` are re-driven
    (None: all). Progress is kept in Kafka as the committed offsets of a consumer group
    per operator (the service running the command) and service, so a second run does
    not re-drive the same letters; a re-driven message keeps its event id, so a
    consumer that already applied it skips it.
    """
    source = registry.named(registry.prefix + topic.removesuffix(".dlq"))
    dlq = source.dead_letter
    group = f"{operator}.redrive.{service or 'all'}"
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**client_options(bootstrap), enable_idempotence=True, acks="all")
    await consumer.start()
    await producer.start()
    examined = redriven = 0
    try:
        partitions = [TopicPartition(dlq, p) for p in sorted(consumer.partitions_for_topic(dlq) or {0})]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        begins = await consumer.beginning_offsets(partitions)
        starts = {tp: committed[tp] if committed[tp] is not None else begins[tp] for tp in partitions}
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            sends = []
            for records in batches.values():
                for record in records:
                    examined += 1
                    headers = {k: v.decode() for k, v in record.headers or ()}
                    if service is not None and headers.get("dlq.service") != service:
                        continue
                    if on_message is not None:
                        on_message(DeadLetter(record.topic, record.partition, record.offset, headers))
                    redriven += 1
                    if not dry_run:
                        sends.append(
                            await producer.send(
                                headers.get("dlq.source.topic", source.name),
                                value=record.value,
                                key=record.key,
                                headers=[
                                    ("redriven.from", f"{dlq}:{record.partition}:{record.offset}".encode())
                                ],
                            )
                        )
            for fut in sends:
                await fut
            if not dry_run and batches:
                await consumer.commit()
            if progress is not None:
                progress(examined, total)
    finally:
        await producer.stop()
        await consumer.stop()
    return Redriven(examined, redriven)


@dataclass(frozen=True)
class SetAside:
    """An outbox row Kafka refused for good (payments_platform.messaging.outbox)."""

    id: int
    topic: str
    key: bytes | None
    size: int
    event_type: str | None
    event_id: str | None
    reason: str
    created_at: datetime
    set_aside_at: datetime


_SET_ASIDE_COLUMNS = """
    id, topic, key, length(value) AS size, headers->>'type' AS event_type,
    headers->>'event_id' AS event_id, reason, created_at, set_aside_at
"""


async def set_aside(
    db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[int] | None = None
) -> list[SetAside]:
    """Rows set aside, oldest first (`ids`: only these)."""
    rows = await db.fetch(
        f"SELECT {_SET_ASIDE_COLUMNS} FROM outbox_unpublishable"
        " WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[]) ORDER BY id",
        None if ids is None else list(ids),
    )
    return [SetAside(**dict(r)) for r in rows]


async def republish_set_aside(
    pool: asyncpg.Pool, ids: Sequence[int] | None, *, dry_run: bool = True
) -> list[SetAside]:
    """Move set-aside rows (`ids`, None: all) back to the outbox, once the cause is fixed
    (the topic's max.message.bytes raised, the topic created); returns the rows moved, or
    with `dry_run` the rows that would be.

    A row goes back byte for byte with its own id: its event id is unchanged, so a
    consumer that somehow saw it already skips it, and the relay publishes it before the
    rows written since (ids are never handed out twice, so its id is free). Refused
    again, it is set aside again. The move is one statement: the row is in exactly one of
    the two tables at any time, and two operators moving it at once move it once.
    """
    if dry_run:
        return await set_aside(pool, ids)
    rows = await pool.fetch(
        f"""
        WITH moved AS (
            DELETE FROM outbox_unpublishable
             WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[])
            RETURNING *
        ), back AS (
            INSERT INTO outbox (id, topic, key, value, headers, created_at)
            SELECT id, topic, key, value, headers, created_at FROM moved
        )
        SELECT {_SET_ASIDE_COLUMNS} FROM moved ORDER BY id
        """,
        None if ids is None else list(ids),
    )
    return [SetAside(**dict(r)) for r in rows]
