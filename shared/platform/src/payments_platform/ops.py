"""Operator actions every service offers: per-partition lag and re-driving dead letters.

Lag is measured against the offsets a consumer stored in its own database (the truth:
docs/product.md, "No lost and no doubled effects"), not Kafka's committed offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from payments_contracts.topics import TopicRegistry
from payments_platform.kafka import client_options

Progress = Callable[[int, int], None]


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


async def redrive_dead_letters(
    bootstrap: str,
    registry: TopicRegistry,
    topic: str,
    *,
    service: str | None,
    operator: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_message: Callable[[dict[str, str]], None] | None = None,
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
                        on_message(headers)
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


def _position(topic: str, record: object) -> str:
    return f"{topic}:{getattr(record, 'partition', '?')}:{getattr(record, 'offset', '?')}"
