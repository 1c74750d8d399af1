"""Operator actions behind `status-projector-ops`: rebuild, replay, lag, re-drive.

Kept apart from the CLI so tests call them directly and the CLI only draws progress.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from payments_shared.kafka import client_options
from payments_shared.topics import TopicRegistry

from .adapters.postgres import VersionTables, activate, active_version, create_version, drop_version
from .projection import (
    Progress,
    input_topics,
    kafka_offsets,
    projection_consumer,
    run_until,
    stored_offsets,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Projecting:
    """What a bounded projection run needs."""

    pool: asyncpg.Pool
    registry: TopicRegistry
    bootstrap: str
    batch_size: int
    rebuild_batch_size: int | None = None  # larger batches for a rebuild (default: batch_size)


@dataclass(frozen=True)
class RebuildResult:
    version: int
    previous: int | None
    events: int
    seconds: float
    dropped: list[int]


async def rebuild(
    ctx: Projecting,
    *,
    activate_when_done: bool = True,
    keep_versions: int = 2,
    progress: Progress | None = None,
    laps: int = 3,
    catch_up_threshold: int = 1000,
) -> RebuildResult:
    """Project the topics from their beginning into a new version, then switch to it.

    The old version keeps serving (and the live projector keeps feeding it) while the
    new one fills. After the first pass reaches the end offsets captured at the start,
    up to `laps - 1` short passes catch up with what arrived meanwhile, so the switch
    hands over a version that is at most a moment behind the live one.
    """
    started = time.perf_counter()
    async with ctx.pool.acquire() as conn:
        version = (await conn.fetchval("SELECT coalesce(max(version), 0) FROM projection_versions")) + 1
        tables = await create_version(conn, version, note="rebuild", secondary_indexes=False)
    topics = input_topics(ctx.registry)
    starts, ends = await kafka_offsets(ctx.bootstrap, topics)
    total = sum(max(0, ends[p] - starts.get(p, 0)) for p in ends)
    events = 0
    for lap in range(laps):
        lap_starts = starts if lap == 0 else await stored_offsets(ctx.pool, tables.consumer)
        # The first pass reads `invoices` to its end before `payments.events`: rows do not
        # depend on how the topics interleave, and this way a payment event finds its
        # invoice instead of parking until it arrives.
        for phase in [[t] for t in topics] if lap == 0 else [topics]:
            names = {t.name for t in phase}
            phase_ends = {p: o for p, o in ends.items() if p[0] in names}
            done_before = events
            consumer = projection_consumer(
                name=tables.consumer,
                tables=tables,
                registry=ctx.registry,
                pool=ctx.pool,
                bootstrap=ctx.bootstrap,
                batch_size=ctx.rebuild_batch_size or ctx.batch_size,
                group_id=f"status-projector.{ctx.registry.prefix}rebuild.v{version}",
                bulk=True,
                topics=phase,
            )
            await run_until(
                consumer,
                ctx.pool,
                starts=lap_starts,
                ends=phase_ends,
                progress=(
                    (lambda done, _, base=done_before: progress(base + done, total))
                    if progress is not None and lap == 0
                    else None
                ),
            )
            events += sum(max(0, o - lap_starts.get(p, starts.get(p, 0))) for p, o in phase_ends.items())
        _, ends = await kafka_offsets(ctx.bootstrap, topics)
        behind = sum(
            max(0, ends[p] - o) for p, o in (await stored_offsets(ctx.pool, tables.consumer)).items()
        )
        if behind <= catch_up_threshold:
            break
    async with ctx.pool.acquire() as conn:
        # Built once over the loaded rows instead of maintained row by row during the load.
        await conn.execute(tables.index_ddl())
    previous: int | None = None
    dropped: list[int] = []
    if activate_when_done:
        async with ctx.pool.acquire() as conn:
            previous = await activate(conn, version)
            old = await conn.fetch(
                "SELECT version FROM projection_versions WHERE version <> $1 ORDER BY version DESC",
                version,
            )
            for row in old[max(0, keep_versions - 1) :]:
                await drop_version(conn, row["version"])
                dropped.append(row["version"])
    log.info("rebuild finished", extra={"version": version, "previous": previous, "events": events})
    return RebuildResult(version, previous, events, time.perf_counter() - started, dropped)


async def replay(ctx: Projecting, since: datetime, *, progress: Progress | None = None) -> int:
    """Re-apply every event from `since` to the captured end into the active version.

    Safe because every change the handlers make is idempotent and guarded by an ERP
    version or an event time: events already applied change nothing, events whose
    effect was lost (a parked event after a fix, a handler bug since fixed) take
    effect. The replay uses its own consumer name, so the live projector's offsets
    and dedupe records are untouched; its own are removed afterwards.
    """
    async with ctx.pool.acquire() as conn:
        version = await active_version(conn)
    name = f"replay_v{version}_{uuid.uuid4().hex[:8]}"
    starts, ends = await kafka_offsets(
        ctx.bootstrap, input_topics(ctx.registry), at_ms=int(since.timestamp() * 1000)
    )
    async with ctx.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)",
            [(name, t, p, o) for (t, p), o in starts.items()],
        )
    tables = VersionTables(version)
    consumer = projection_consumer(
        name=name,
        tables=tables,
        registry=ctx.registry,
        pool=ctx.pool,
        bootstrap=ctx.bootstrap,
        batch_size=ctx.batch_size,
        group_id=f"status-projector.{name}",
    )
    try:
        await run_until(consumer, ctx.pool, starts=starts, ends=ends, progress=progress)
    finally:
        async with ctx.pool.acquire() as conn:
            await conn.execute("DELETE FROM consumer_offsets WHERE consumer = $1", name)
            await conn.execute("DELETE FROM processed_events WHERE consumer = $1", name)
    return sum(max(0, ends[p] - starts[p]) for p in ends)


@dataclass(frozen=True)
class PartitionLag:
    version: int
    state: str
    topic: str
    partition: int
    next_offset: int
    end_offset: int

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset)


async def lag(ctx: Projecting) -> list[PartitionLag]:
    """Per version that is active or building: how far each partition is behind."""
    starts, ends = await kafka_offsets(ctx.bootstrap, input_topics(ctx.registry))
    async with ctx.pool.acquire() as conn:
        versions = await conn.fetch(
            "SELECT version, consumer, state FROM projection_versions "
            "WHERE state <> 'retired' ORDER BY version"
        )
        result = []
        for v in versions:
            stored = await stored_offsets(conn, v["consumer"])
            for (topic, partition), end in sorted(ends.items()):
                result.append(
                    PartitionLag(
                        v["version"],
                        v["state"],
                        topic,
                        partition,
                        stored.get((topic, partition), starts[(topic, partition)]),
                        end,
                    )
                )
    return result


async def parked_count(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        tables = VersionTables(await active_version(conn))
        rows = await conn.fetch(f"SELECT reason, count(*) AS n FROM {tables.parked} GROUP BY reason")
    return {r["reason"]: r["n"] for r in rows}


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
    dry_run: bool = False,
    progress: Progress | None = None,
    on_message: Callable[[dict[str, str]], None] | None = None,
) -> Redriven:
    """Publish dead letters of `topic` back to the topic they came from, after a fix.

    `topic` is a source topic (`invoices`) or its dead-letter topic (`invoices.dlq`),
    without the deployment prefix. Only dead letters of `service` are re-driven
    (None: all). Progress is kept in Kafka as the committed offsets of a consumer group
    per service, so a second run does not re-drive the same letters; a re-driven
    message keeps its event id, so a consumer that already applied it skips it.
    """
    source = registry.named(registry.prefix + topic.removesuffix(".dlq"))
    dlq = source.dead_letter
    group = f"status-projector.redrive.{service or 'all'}"
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
                                    (
                                        "redriven.from",
                                        f"{dlq}:{record.partition}:{record.offset}".encode(),
                                    )
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
