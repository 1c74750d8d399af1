"""Running projections: the live one (follows the active version, switches when a
rebuild activates a new one) and bounded runs that stop at captured end offsets
(rebuild, replay).

Hand-over after a rebuild: the rebuild fills version N+1 with consumer
`projection_v<N+1>` until it reaches the end offsets it captured, catches up once
more, then moves the pointer in one transaction. The live projector polls the pointer;
when it moves it stops its `projection_v<N>` consumer after the batch in hand and
starts `projection_v<N+1>`, which resumes from the offsets the rebuild stored with
its rows - so the new version continues exactly where the rebuild stopped, and any
overlap is harmless: the building block skips records below a consumer's stored
offsets, under a row lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from payments_contracts import Envelope
from payments_contracts.topics import Topic, TopicRegistry
from payments_platform.kafka import client_options
from payments_platform.messaging import (
    BatchHandler,
    Delivery,
    Transaction,
    TransactionalConsumer,
    is_transient,
)
from payments_platform.messaging.offsets import Partition, stored_offsets
from payments_platform.sessions import keeps_session_state

from .adapters.projection_batch import PostgresProjectionBatch
from .adapters.schema import VersionTables, active_version, take_snapshot
from .handlers import RULES, apply_batch
from .settings import SERVICE

log = logging.getLogger(__name__)

__all__ = [
    "LiveProjection",
    "Partition",
    "Snapshots",
    "collector_allocations",
    "input_topics",
    "kafka_offsets",
    "projection_consumer",
    "run_until",
]


def collector_allocations(batch_size: int) -> int:
    """Allocations between the cyclic collector's passes: more than the two batches in
    hand (one decoded, one in the database; about 15 tracked objects per event) keep
    alive, or each pass traces the same live messages again and again (measured: 15% of
    the projector's CPU at the shared default). Garbage without cycles is freed at once
    either way; only rare cycles wait longer."""
    return max(20_000, 50 * batch_size)


def input_topics(registry: TopicRegistry) -> list[Topic]:
    return [registry.invoices, registry.payments_events]


def projecting(tables: VersionTables, *, bulk: bool = False) -> BatchHandler:
    """The batch handler projecting into one version of the read model.

    `bulk` (a rebuild filling a new version): commits do not wait for the WAL flush.
    """
    decoded: dict[object, Envelope] = {}

    async def handle(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        await apply_batch(deliveries, await PostgresProjectionBatch.begin(tx, tables, decoded, bulk=bulk))

    return handle


def projection_consumer(
    *,
    name: str,
    tables: VersionTables,
    registry: TopicRegistry,
    pool: asyncpg.Pool,
    bootstrap: str,
    batch_size: int,
    group_id: str | None = None,
    bulk: bool = False,
    topics: Sequence[Topic] | None = None,
    partitions: Sequence[Partition] | None = None,
) -> TransactionalConsumer:
    return TransactionalConsumer(
        service=SERVICE,
        name=name,
        registry=registry,
        topics=input_topics(registry) if topics is None else topics,
        pool=pool,
        bootstrap=bootstrap,
        handle=projecting(tables, bulk=bulk),
        batch_size=batch_size,
        # No processed_events row per event: every rule is idempotent and guarded by an
        # ERP version or an event time (domain/model.py), so a second copy of an event
        # (the relay's at-least-once re-send) changes nothing wherever it lands; the
        # stored offsets keep Kafka's own redelivery out. Saved: an insert per event.
        dedupe=False,
        # msgspec Structs instead of pydantic models: the handlers only read them, and
        # validate_json was 22% of the projector's CPU (fast_decoding.py).
        fast_decoding=True,
        partitions=partitions,
        # The topic prefix in the group: deployments (and test runs) sharing a cluster
        # must not join one group, or they rebalance each other all the time.
        group_id=group_id or f"{SERVICE}.{registry.prefix}{name}",
    )


class LiveProjection:
    """Keeps the active version up to date; a `Background` part of the ServiceHost."""

    def __init__(
        self,
        *,
        registry: TopicRegistry,
        pool: asyncpg.Pool,
        bootstrap: str,
        batch_size: int,
        switch_poll_s: float = 1.0,
    ) -> None:
        self._registry = registry
        self._pool = pool
        self._bootstrap = bootstrap
        self._batch_size = batch_size
        self._poll_s = switch_poll_s
        self._consumer: TransactionalConsumer | None = None
        self.version: int | None = None

    @property
    def ready(self) -> bool:
        return self._consumer is not None and self._consumer.in_group

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            version = await self._active(stopping)
            if version is None:
                return
            tables = VersionTables(version)
            consumer = projection_consumer(
                name=tables.consumer,
                tables=tables,
                registry=self._registry,
                pool=self._pool,
                bootstrap=self._bootstrap,
                batch_size=self._batch_size,
            )
            self._consumer, self.version = consumer, version
            log.info("projecting into read-model version", extra={"version": version})
            task = asyncio.create_task(consumer.run())
            try:
                await self._until_switched(version, task, stopping)
            finally:
                consumer.stop()
                await task  # a failed consumer fails the service (ServiceHost logs it)

    async def _active(self, stopping: asyncio.Event) -> int | None:
        while not stopping.is_set():
            try:
                return await active_version(self._pool)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await _wait(stopping, self._poll_s)
        return None

    async def _until_switched(self, version: int, task: asyncio.Task[None], stopping: asyncio.Event) -> None:
        while not stopping.is_set() and not task.done():
            await _wait(stopping, self._poll_s, task)
            try:
                current = await active_version(self._pool)
            except Exception as exc:
                if is_transient(exc):
                    continue
                raise
            if current != version:
                log.info("read-model version switched", extra={"from": version, "to": current})
                return


class Snapshots:
    """Snapshots the active version every `interval_s` (its rows and the offsets they
    reflect), so a rebuild reads only what came after the newest one: its time follows the
    size of the read model, not the years of history behind it
    (docs/decisions/0046-rebuild-from-snapshots-in-parallel.md). Each instance tries; a
    snapshot younger than the interval, taken by any of them, counts."""

    def __init__(self, pool: asyncpg.Pool, interval_s: float, *, keep: int = 2) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._keep = keep
        self.ready = True

    async def run(self, stopping: asyncio.Event) -> None:
        # The first one an interval after start, not at once: a new deployment's read
        # model is still catching up, and a snapshot of it would save nothing.
        while self._interval_s > 0 and not stopping.is_set():
            await _wait(stopping, self._interval_s)
            if stopping.is_set():
                return
            try:
                async with self._pool.acquire() as conn:
                    keeps_session_state(conn)  # a session lock: reset in full when released
                    # One instance at a time; the others find it fresh and wait again.
                    if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('projection_snapshots'))"):
                        try:
                            age = await conn.fetchval(
                                "SELECT extract(epoch FROM now() - max(taken_at)) FROM projection_snapshots"
                            )
                            if age is None or age >= self._interval_s:
                                version = await active_version(conn)
                                taken = await take_snapshot(conn, version, RULES, keep=self._keep)
                                log.info(
                                    "snapshot taken", extra={"snapshot": taken.snapshot, "version": version}
                                )
                        finally:
                            await conn.execute("SELECT pg_advisory_unlock(hashtext('projection_snapshots'))")
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("snapshot failed; trying again next interval")


async def _wait(stopping: asyncio.Event, seconds: float, task: asyncio.Task[None] | None = None) -> None:
    waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stopping.wait())]
    if task is not None:
        waiters.append(task)  # type: ignore[arg-type]
    _, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        if waiter is not task:
            waiter.cancel()


# --- bounded runs (rebuild, replay) -------------------------------------------------------


async def kafka_offsets(
    bootstrap: str, topics: Sequence[Topic], *, at_ms: int | None = None
) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """(start, end) offsets of every partition: start is the beginning, or the first
    offset at or after `at_ms` (the end when nothing is that new)."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        # The registry's partition counts are what ensure_topics applied to the cluster.
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        ends = await consumer.end_offsets(partitions)
        if at_ms is None:
            starts = await consumer.beginning_offsets(partitions)
        else:
            found = await consumer.offsets_for_times({tp: at_ms for tp in partitions})
            starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in partitions}
    finally:
        await consumer.stop()
    return (
        {(tp.topic, tp.partition): o for tp, o in starts.items()},
        {(tp.topic, tp.partition): o for tp, o in ends.items()},
    )


Progress = Callable[[int, int], None]  # (done, total) events


async def run_until(
    consumer: TransactionalConsumer,
    pool: asyncpg.Pool,
    *,
    starts: dict[Partition, int],
    ends: dict[Partition, int],
    progress: Progress | None = None,
    poll_s: float = 0.2,
) -> None:
    """Run `consumer` until its stored offsets reach `ends` on every partition."""
    total = sum(max(0, ends[p] - starts.get(p, 0)) for p in ends)
    task = asyncio.create_task(consumer.run())
    try:
        while True:
            stored = await stored_offsets(pool, consumer.name)
            done = sum(max(0, min(stored.get(p, starts.get(p, 0)), ends[p]) - starts.get(p, 0)) for p in ends)
            if progress is not None:
                progress(done, total)
            if all(stored.get(p, starts.get(p, 0)) >= end for p, end in ends.items()):
                return
            if task.done():
                task.result()
                raise RuntimeError(f"consumer {consumer.name} stopped before reaching the end offsets")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), poll_s)
    finally:
        consumer.stop()
        await task
