"""status-projector reading from a streaming replica (PAYMENTS_READ_DATABASE_URL), as OS
processes on a primary and a hot standby of the test's own: answers say how far the
replica has replayed; a caller passing the offsets of its own write reads it even while
the replica lags; a replica killed leaves reads to the primary, never a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from test_walking_skeleton import E2E_MERCHANT, guest_checkout_command, seed_000_invoice, until_status

from infra import load_runtime
from kafka_tools import eventually, produce, read_all
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from system import System

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    primary = load_runtime().PostgresNode().start(tmp_path / "pg", durable=False)
    replica = None
    try:
        replica = primary.start_replica(tmp_path / "pg-replica")
        yield primary, replica
    finally:
        for node in (replica, primary):
            if node is not None:
                node.stop()
                node.remove_data()


@pytest.fixture
def replica_system(databases: tuple[Any, Any], system_with: Callable[..., System], run_id: str) -> System:
    primary, replica = databases  # first: stopped after the programs
    return system_with(
        {"merchants": {E2E_MERCHANT: {"accounts": [f"C-{run_id}"]}}},
        database=primary.dsn,
        env={"PAYMENTS_READ_DATABASE_URL": replica.dsn},
    )


@pytest.fixture
async def reader(replica_system: System) -> AsyncIterator[httpx.AsyncClient]:
    portal = {"authorization": f"Bearer {demo_api_key(E2E_MERCHANT)}"}
    async with httpx.AsyncClient(
        base_url=replica_system.url("status-projector"), headers=portal, timeout=10
    ) as client:
        yield client


async def replay(replica: Any, pause: bool) -> None:
    conn = await asyncpg.connect(replica.dsn)
    try:
        await conn.execute("SELECT pg_wal_replay_pause()" if pause else "SELECT pg_wal_replay_resume()")
    finally:
        await conn.close()


def offset_of(answer: dict[str, Any], topic: str) -> int:
    return next(o["next_offset"] for o in answer["freshness"]["offsets"] if o["topic"] == topic)


async def test_reads_come_from_the_replica_and_a_caller_reads_its_own_write(
    replica_system: System,
    databases: tuple[Any, Any],
    reader: httpx.AsyncClient,
    kafka_bootstrap: str,
    topics: TopicRegistry,
    run_id: str,
) -> None:
    _, replica = databases
    account, number = f"C-{run_id}", f"INV-{run_id}"
    path = f"/v1/accounts/{account}/invoices/{number}"
    await produce(kafka_bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)])
    await until_status(replica_system, account, number, "payable")

    # The replica stops replaying; the primary moves on: the invoice goes pending.
    await replay(replica, pause=True)
    try:
        command = guest_checkout_command(account, number, key=f"pay-{run_id}")
        await produce(kafka_bootstrap, topics.payments_commands.name, [command])
        record = await eventually(
            lambda: _answer_record(kafka_bootstrap, topics, str(command.event_id)),
            lambda r: r is not None,
            timeout=45,
            what="payment.requested",
        )
        assert record is not None
        mine = f"{topics.payments_events.name}:{record.partition}:{record.offset + 1}"

        stale = (await reader.get(path)).json()
        assert stale["pay_status"] == "payable", "the answer came from the paused replica"
        assert offset_of(stale, topics.payments_events.name) <= record.offset, "freshness is the replica's"

        started = time.monotonic()
        fresh = await reader.get(path, params={"min_offset": mine})
        waited = time.monotonic() - started
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["pay_status"] == "pending", "the caller reads its own write (from the primary)"
        assert offset_of(fresh.json(), topics.payments_events.name) > record.offset
        assert waited < 3.0
    finally:
        await replay(replica, pause=False)

    # Replay resumed: the replica answers the same offsets itself again.
    await eventually(
        lambda: _json(reader, path, {"min_offset": mine}),
        lambda a: a.get("pay_status") == "pending",
        timeout=30,
        what="the replica caught up",
    )

    # A replica killed: reads go to the primary, within the deadline, never a 500.
    replica.kill()
    started = time.monotonic()
    answers = await asyncio.gather(*(reader.get(path) for _ in range(8)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert time.monotonic() - started < 2.0
    await asyncio.to_thread(replica.restart)
    assert (await reader.get(path)).status_code == 200


async def _answer_record(bootstrap: str, topics: TopicRegistry, command_id: str) -> Any:
    for record in await read_all(bootstrap, topics.payments_events.name):
        event = topics.payments_events.decoder.validate_json(record.value)
        if str(event.causation_id) == command_id and event.type == "payment.requested":
            return record
    return None


async def _json(reader: httpx.AsyncClient, path: str, params: dict[str, str]) -> dict[str, Any]:
    answer = await reader.get(path, params=params)
    return dict(answer.json()) if answer.status_code == 200 else {"status": answer.status_code}
