"""Operator actions behind `status-projector-ops`: rebuild, replay, parked events, and
which consumers' lag counts.

Kept apart from the CLI so tests call them directly and the CLI only draws progress.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from payments_contracts.topics import TopicRegistry
from payments_platform.messaging import offsets
from payments_platform.messaging.offsets import stored_offsets
from payments_platform.ops import LagScope

from .adapters.repositories import parked_reasons
from .adapters.schema import (
    VersionTables,
    activate,
    active_version,
    add_secondary_indexes,
    create_version,
    drop_version,
    live_versions,
    next_version,
    versions_besides,
)
from .projections import Progress, input_topics, kafka_offsets, projection_consumer, run_until
from .settings import SERVICE

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
        version = await next_version(conn)
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
                group_id=f"{SERVICE}.{ctx.registry.prefix}rebuild.v{version}",
                bulk=True,
                topics=phase,
            )
            await run_until(
                consumer,
                ctx.pool,
                starts=lap_starts,
                ends=phase_ends,
                progress=_offset(progress, done_before, total) if lap == 0 else None,
            )
            events += sum(max(0, o - lap_starts.get(p, starts.get(p, 0))) for p, o in phase_ends.items())
        _, ends = await kafka_offsets(ctx.bootstrap, topics)
        behind = sum(
            max(0, ends[p] - o) for p, o in (await stored_offsets(ctx.pool, tables.consumer)).items()
        )
        if behind <= catch_up_threshold:
            break
    async with ctx.pool.acquire() as conn:
        await add_secondary_indexes(conn, tables)
    previous: int | None = None
    dropped: list[int] = []
    if activate_when_done:
        async with ctx.pool.acquire() as conn:
            previous = await activate(conn, version)
            for old in (await versions_besides(conn, version))[max(0, keep_versions - 1) :]:
                await drop_version(conn, old)
                dropped.append(old)
    log.info("rebuild finished", extra={"version": version, "previous": previous, "events": events})
    return RebuildResult(version, previous, events, time.perf_counter() - started, dropped)


def _offset(progress: Progress | None, base: int, total: int) -> Progress | None:
    """Progress of one phase as progress of the whole first pass."""
    if progress is None:
        return None
    report = progress
    return lambda done, _: report(base + done, total)


async def replay(ctx: Projecting, since: datetime, *, progress: Progress | None = None) -> int:
    """Re-apply every event from `since` to the captured end into the active version.

    Safe because every change the handlers make is idempotent and guarded by an ERP
    version or an event time: events already applied change nothing, events whose
    effect was lost (a parked event after a fix, a handler bug since fixed) take
    effect. The same property lets the projector keep no dedupe record per event (a
    copy the relay published twice is a replay of one event). The replay uses its own
    consumer name, so the live projector's offsets are untouched; its own are removed
    afterwards.
    """
    async with ctx.pool.acquire() as conn:
        version = await active_version(conn)
    name = f"replay_v{version}_{uuid.uuid4().hex[:8]}"
    starts, ends = await kafka_offsets(
        ctx.bootstrap, input_topics(ctx.registry), at_ms=int(since.timestamp() * 1000)
    )
    await offsets.rewind(ctx.pool, name, starts)
    tables = VersionTables(version)
    consumer = projection_consumer(
        name=name,
        tables=tables,
        registry=ctx.registry,
        pool=ctx.pool,
        bootstrap=ctx.bootstrap,
        batch_size=ctx.batch_size,
        group_id=f"{SERVICE}.{name}",
    )
    try:
        await run_until(consumer, ctx.pool, starts=starts, ends=ends, progress=progress)
    finally:
        async with ctx.pool.acquire() as conn:
            await offsets.reset(conn, name)
    return sum(max(0, ends[p] - starts[p]) for p in ends)


def lag_scope(registry: TopicRegistry, *, building: bool = True) -> LagScope:
    """The consumer of the active read-model version and, with `building`, of each version
    a rebuild is filling. A retired version's consumer is never in it: nothing feeds that
    version any more, so its growing distance to the end offsets is not lag."""
    topics = [t.name for t in input_topics(registry)]

    async def scope(pool: asyncpg.Pool) -> dict[str, list[str]]:
        async with pool.acquire() as conn:
            versions = await live_versions(conn)
        return {consumer: topics for _, consumer, state in versions if building or state == "active"}

    return scope


async def parked_count(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        return await parked_reasons(conn, VersionTables(await active_version(conn)))
