"""A rebuild that starts from a snapshot, or runs in several processes, ends with exactly
the rows of a rebuild from the first offset in one process, row for row
(docs/decisions/0046-rebuild-from-snapshots-in-parallel.md)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import asyncpg
import pytest
from status_projector_support import (
    Clock,
    account_story,
    checkout_opened,
    dump,
    project_to_end,
    projector_pool,
    publish,
    requested,
    succeeded,
    synced,
)

from payments_contracts import Envelope
from payments_contracts.topics import TopicRegistry
from status_projector import ops
from status_projector.adapters.schema import VersionTables

pytestmark = pytest.mark.integration


async def rows(pool: asyncpg.Pool, version: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of a version, the account policies included."""
    out = await dump(pool, version)
    async with pool.acquire() as conn:
        accounts = await conn.fetch(f"SELECT * FROM {VersionTables(version).accounts} ORDER BY account_id")
    return {**out, "accounts": [dict(r) for r in accounts]}


def later(clock: Clock, account: str) -> list[Envelope]:
    """What happens to an account after the snapshot: its open checkout is paid, a new
    invoice is paid before the ERP's invoice.synced arrives (so it parks first)."""
    paid_late, early = uuid.uuid4(), uuid.uuid4()
    number = f"{account}-INV-9"
    return [
        requested(clock, account, paid_late, [(f"{account}-INV-2", 10_000)]),
        checkout_opened(clock, account, paid_late),
        succeeded(clock, account, paid_late, [(f"{account}-INV-2", 10_000)]),
        requested(clock, account, early, [(number, 5_000)]),
        synced(clock, account, number, due=date(2025, 3, 1)),
        succeeded(clock, account, early, [(number, 5_000)]),
    ]


async def test_a_rebuild_from_a_snapshot_and_in_parallel_equals_one_from_the_first_offset(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "WORKER_EVENTS", 1)  # two processes even for this short history
    clock = Clock()
    before = [e for i in range(12) for e in account_story(clock, f"S{i}")]
    # A payment whose invoice only arrives after the snapshot: the snapshot holds it parked.
    orphan = uuid.uuid4()
    before += [requested(clock, "S0", orphan, [("S0-INV-LATE", 2_500)])]
    await publish(kafka_bootstrap, topics, before)
    pool = await projector_pool(database_url)
    try:
        await project_to_end(pool, topics, kafka_bootstrap)
        one = ops.Projecting(pool, topics, kafka_bootstrap, batch_size=50)
        taken = await ops.snapshot(one)
        assert taken.version == 1 and taken.invoices == 12 * 3

        after = [e for i in range(12) for e in later(clock, f"S{i}")]
        after += [e for i in range(12, 16) for e in account_story(clock, f"S{i}")]
        after += [synced(clock, "S0", "S0-INV-LATE", due=date(2025, 4, 1))]
        await publish(kafka_bootstrap, topics, after)

        full = await ops.rebuild(one, activate_when_done=False, from_snapshot=False)
        parallel = ops.Projecting(
            pool, topics, kafka_bootstrap, batch_size=50, rebuild_workers=2, dsn=database_url
        )
        from_snapshot = await ops.rebuild(parallel, activate_when_done=False, from_snapshot=True)
        in_parallel = await ops.rebuild(
            parallel, activate_when_done=False, from_snapshot=False, keep_versions=9
        )
        await project_to_end(pool, topics, kafka_bootstrap)  # the live version, to the end too

        assert full.snapshot is None and in_parallel.snapshot is None
        assert from_snapshot.snapshot == taken.snapshot
        assert from_snapshot.events == len(after)  # only what came after the snapshot was read
        assert full.events == len(before) + len(after)
        expected = await rows(pool, full.version)
        assert len(expected["invoices"]) == 16 * 3 + 12 + 1
        assert not expected["parked"]  # the orphan payment found its invoice
        for version in (from_snapshot.version, in_parallel.version, 1):
            assert await rows(pool, version) == expected, f"version {version} differs"
    finally:
        await pool.close()


async def test_a_snapshot_of_other_rules_is_not_started_from(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    await publish(kafka_bootstrap, topics, account_story(clock, "R0"))
    pool = await projector_pool(database_url)
    try:
        await project_to_end(pool, topics, kafka_bootstrap)
        ctx = ops.Projecting(pool, topics, kafka_bootstrap, batch_size=50)
        await ops.snapshot(ctx)
        monkeypatch.setattr(ops, "RULES", "a later edition of the rules")
        result = await ops.rebuild(ctx, activate_when_done=False, from_snapshot=True)
        assert result.snapshot is None
        assert result.events == len(account_story(Clock(), "R0"))
    finally:
        await pool.close()
