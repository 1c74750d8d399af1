"""Operator actions behind `status-projector-ops`: rebuild, replay, parked events, and
which consumers' lag counts.

Kept apart from the CLI so tests call them directly and the CLI only draws progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from payments_contracts.topics import Topic, TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import TransactionalConsumer, offsets
from payments_platform.messaging.offsets import stored_offsets
from payments_platform.ops import LagScope
from payments_platform.service import collect_garbage_less_often

from .adapters.repositories import parked_reasons
from .adapters.schema import (
    Snapshot,
    VersionTables,
    activate,
    active_version,
    add_secondary_indexes,
    create_version,
    drop_version,
    fill_from_snapshot,
    latest_snapshot,
    live_versions,
    next_version,
    take_snapshot,
    versions_besides,
)
from .handlers import RULES
from .projections import (
    Partition,
    Progress,
    collector_allocations,
    input_topics,
    kafka_offsets,
    projection_consumer,
    run_until,
)
from .settings import SCHEMA, SERVICE

log = logging.getLogger(__name__)
WORKER_EVENTS = 200_000


@dataclass(frozen=True)
class Projecting:
    """What a bounded projection run needs."""

    pool: asyncpg.Pool
    registry: TopicRegistry
    bootstrap: str
    batch_size: int
    rebuild_batch_size: int | None = None  # larger batches for a rebuild (default: batch_size)
    # A rebuild's first pass in this many processes, each on its share of the partitions
    # (the same partition numbers of both topics: an account's events meet in one worker).
    # More than one needs `dsn`, for the other processes to connect.
    rebuild_workers: int = 1
    dsn: str | None = None


@dataclass(frozen=True)
class RebuildResult:
    version: int
    previous: int | None
    events: int
    seconds: float
    dropped: list[int]
    snapshot: int | None = None  # the snapshot it started from


async def rebuild(
    ctx: Projecting,
    *,
    activate_when_done: bool = True,
    keep_versions: int = 2,
    progress: Progress | None = None,
    laps: int = 3,
    catch_up_threshold: int = 1000,
    from_snapshot: bool = False,
) -> RebuildResult:
    """Project the topics from their beginning into a new version, then switch to it.

    The old version keeps serving (and the live projector keeps feeding it) while the
    new one fills. After the first pass reaches the end offsets captured at the start,
    up to `laps - 1` short passes catch up with what arrived meanwhile, so the switch
    hands over a version that is at most a moment behind the live one.

    `from_snapshot`: start from the newest snapshot taken under the current rules
    (`take_snapshot`), its rows copied and its offsets as the start, instead of the
    first offset; without one, from the beginning
    (docs/decisions/0046-rebuild-from-snapshots-in-parallel.md).
    """
    started = time.perf_counter()
    async with ctx.pool.acquire() as conn:
        version = await next_version(conn)
        tables = await create_version(conn, version, note="rebuild", secondary_indexes=False)
        snapshot = await latest_snapshot(conn, RULES) if from_snapshot else None
        if snapshot is not None:
            await fill_from_snapshot(conn, snapshot, tables)
    topics = input_topics(ctx.registry)
    starts, ends = await kafka_offsets(ctx.bootstrap, topics)
    if snapshot is not None:
        starts = {p: max(o, snapshot.offsets.get(p, o)) for p, o in starts.items()}
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
            await _project(
                ctx,
                tables,
                phase,
                lap_starts,
                phase_ends,
                progress=_offset(progress, events, total) if lap == 0 else None,
                workers=ctx.rebuild_workers if lap == 0 else 1,
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
    return RebuildResult(
        version,
        previous,
        events,
        time.perf_counter() - started,
        dropped,
        snapshot.snapshot if snapshot is not None else None,
    )


async def _project(
    ctx: Projecting,
    tables: VersionTables,
    phase: list[Topic],
    starts: dict[Partition, int],
    ends: dict[Partition, int],
    *,
    progress: Progress | None,
    workers: int,
) -> None:
    """Project `phase` up to `ends` into `tables`: in this process, or split by partition
    number between it and `workers - 1` others (each runs `rebuild_worker`)."""
    numbers = sorted({p for _, p in ends})
    events = sum(max(0, o - starts.get(p, 0)) for p, o in ends.items())
    # A worker process costs about 1.2 s of CPU to start (imports, a Kafka client; measured
    # with bench/rebuild_ab.py: 2 processes against 1 over 220,000 events, +9 to +12 µs of
    # service CPU per event): one per 200,000 events of the phase at most, so a short
    # catch-up or a rebuild from a recent snapshot stays in this process.
    workers = min(workers, len(numbers), max(1, events // WORKER_EVENTS)) if ctx.dsn is not None else 1
    shares = [[(t, p) for t, p in sorted(ends) if numbers.index(p) % workers == w] for w in range(workers)]

    def consumer(share: list[Partition] | None) -> TransactionalConsumer:
        return projection_consumer(
            name=tables.consumer,
            tables=tables,
            registry=ctx.registry,
            pool=ctx.pool,
            bootstrap=ctx.bootstrap,
            batch_size=ctx.rebuild_batch_size or ctx.batch_size,
            group_id=f"{SERVICE}.{ctx.registry.prefix}rebuild.v{tables.version}",
            bulk=True,
            topics=phase,
            partitions=share,
        )

    if workers == 1:
        await run_until(consumer(None), ctx.pool, starts=starts, ends=ends, progress=progress)
        return
    others = [
        asyncio.create_task(_worker_process(ctx, tables, phase, share, starts, ends)) for share in shares[1:]
    ]
    # This process takes the first share and waits for every partition of the phase, the
    # others' included (they share the consumer name and its offsets), so its progress is
    # the whole phase's; a worker that fails fails the rebuild.
    mine = asyncio.create_task(
        run_until(consumer(shares[0]), ctx.pool, starts=starts, ends=ends, progress=progress)
    )
    try:
        done, _ = await asyncio.wait([mine, *others], return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        await asyncio.gather(mine, *others)
    finally:
        for task in (mine, *others):
            task.cancel()
        await asyncio.gather(mine, *others, return_exceptions=True)


async def _worker_process(
    ctx: Projecting,
    tables: VersionTables,
    phase: list[Topic],
    share: list[Partition],
    starts: dict[Partition, int],
    ends: dict[Partition, int],
) -> None:
    spec = {
        "dsn": ctx.dsn,
        "prefix": ctx.registry.prefix,
        "partitions": ctx.registry.invoices.partitions,
        "bootstrap": ctx.bootstrap,
        "batch_size": ctx.rebuild_batch_size or ctx.batch_size,
        "version": tables.version,
        "topics": [t.name for t in phase],
        "share": share,
        "starts": [[t, p, o] for (t, p), o in starts.items() if (t, p) in share],
        "ends": [[t, p, o] for (t, p), o in ends.items() if (t, p) in share],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from status_projector.ops import rebuild_worker; rebuild_worker()",
        json.dumps(spec),
    )
    try:
        code = await process.wait()
    except asyncio.CancelledError:
        process.kill()
        await process.wait()
        raise
    if code != 0:
        raise RuntimeError(f"rebuild worker for {share} exited with {code}")


def rebuild_worker() -> None:
    """One process of a parallel rebuild: its share of the partitions, to the ends given
    (argv[1]: the spec `_worker_process` writes)."""
    spec = json.loads(sys.argv[1])

    async def work() -> None:
        registry = TopicRegistry(spec["prefix"], spec["partitions"])
        tables = VersionTables(spec["version"])
        pool = await open_pool(spec["dsn"], SCHEMA, size=2)
        try:
            consumer = projection_consumer(
                name=tables.consumer,
                tables=tables,
                registry=registry,
                pool=pool,
                bootstrap=spec["bootstrap"],
                batch_size=spec["batch_size"],
                group_id=f"{SERVICE}.{registry.prefix}rebuild.v{tables.version}",
                bulk=True,
                topics=[registry.named(name) for name in spec["topics"]],
                partitions=[(t, p) for t, p in spec["share"]],
            )
            await run_until(
                consumer,
                pool,
                starts={(t, p): o for t, p, o in spec["starts"]},
                ends={(t, p): o for t, p, o in spec["ends"]},
            )
        finally:
            await pool.close()

    collect_garbage_less_often(collector_allocations(spec["batch_size"]))
    asyncio.run(work())


async def snapshot(ctx: Projecting, *, keep: int = 2) -> Snapshot:
    """A snapshot of the active version for later rebuilds to start from."""
    async with ctx.pool.acquire() as conn:
        return await take_snapshot(conn, await active_version(conn), RULES, keep=keep)


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
