"""PostgreSQL going away under the running system (a database of the test's own, so it
can be stopped and frozen): every read route answers 503 with Retry-After and a problem
body within 2 s, never 500 and never a hang; and a fast shutdown with a restart, again
and again, never stops a service or one of its loops: each round's invoice and payment
go all the way through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_walking_skeleton import E2E_MERCHANT, guest_checkout_command, seed_000_invoice, until_status

from infra import load_runtime
from kafka_tools import produce
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from system import System

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROUNDS = 5
ANSWER_WITHIN_S = 2.0


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Any]:
    node = load_runtime().PostgresNode().start(tmp_path / "pg", durable=False)
    try:
        yield node
    finally:
        node.thaw()
        node.stop()
        node.remove_data()


@pytest.fixture
def outage_system(own_postgres: Any, system_with: Callable[..., System], run_id: str) -> Iterator[System]:
    # own_postgres first: set up before the programs start, stopped after they stop. A
    # process that died during the outages fails the test there (exit code != 0).
    yield system_with({"merchants": {E2E_MERCHANT: {"accounts": [f"C-{run_id}"]}}}, database=own_postgres.dsn)
    own_postgres.thaw()


@pytest.fixture
async def reader(outage_system: System) -> AsyncIterator[httpx.AsyncClient]:
    portal = {"authorization": f"Bearer {demo_api_key(E2E_MERCHANT)}"}
    async with httpx.AsyncClient(
        base_url=outage_system.url("status-projector"), headers=portal, timeout=10
    ) as client:
        yield client


def routes(account: str, number: str) -> list[str]:
    return [
        f"/v1/accounts/{account}/invoices",
        f"/v1/accounts/{account}/invoices/{number}",
        f"/v1/accounts/{account}/summary",
    ]


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = await client.get(path)
    return time.monotonic() - started, response


async def assert_unavailable(client: httpx.AsyncClient, paths: list[str], how: str) -> list[float]:
    took = []
    # Concurrently, as portals would, and more requests than the pool has connections.
    answers = await asyncio.gather(*(timed(client, p) for p in paths * 4))
    for (seconds, response), path in zip(answers, paths * 4, strict=True):
        assert response.status_code == 503, f"{how}: {path} answered {response.status_code} {response.text}"
        assert int(response.headers["retry-after"]) > 0
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "urn:payments:read-model:unavailable"
        assert seconds < ANSWER_WITHIN_S, f"{how}: {path} took {seconds:.2f}s"
        took.append(seconds)
    seconds, ready = await timed(client, "/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] is False, ready.text
    assert seconds < ANSWER_WITHIN_S, f"{how}: /health/ready took {seconds:.2f}s"
    return took


async def test_read_routes_answer_503_with_retry_after_while_postgresql_is_stopped_or_frozen(
    outage_system: System, own_postgres: Any, kafka_bootstrap: str, topics: TopicRegistry, run_id: str,
    reader: httpx.AsyncClient,
) -> None:  # fmt: skip
    account, number = f"C-{run_id}", f"INV-{run_id}"
    await produce(kafka_bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)])
    await until_status(outage_system, account, number, "payable")

    await asyncio.to_thread(own_postgres.stop)  # pg_ctl stop -m fast: connections refused
    stopped = await assert_unavailable(reader, routes(account, number), "stopped")
    await asyncio.to_thread(own_postgres.restart)
    await until_status(outage_system, account, number, "payable")

    own_postgres.freeze()  # SIGSTOP: connections open, nothing answers
    try:
        frozen = await assert_unavailable(reader, routes(account, number), "frozen")
        frozen += await assert_unavailable(reader, routes(account, number), "frozen, pool exhausted")
    finally:
        own_postgres.thaw()
    await until_status(outage_system, account, number, "payable")
    print(f"\n503 within: stopped max {max(stopped):.2f}s, frozen max {max(frozen):.2f}s")


async def test_every_service_resumes_after_each_fast_shutdown_and_restart(
    outage_system: System, own_postgres: Any, kafka_bootstrap: str, topics: TopicRegistry, run_id: str
) -> None:
    account = f"C-{run_id}"
    for round_ in range(ROUNDS):
        number = f"INV-{run_id}-{round_}"
        # The input arrives while the database is going down: consumers, the registration
        # worker and the relays are all in the middle of their loops when sessions end.
        await produce(kafka_bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)])
        await asyncio.sleep(0.3)
        await asyncio.to_thread(own_postgres.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_postgres.restart)
        await until_status(outage_system, account, number, "payable")
        command = guest_checkout_command(account, number, key=f"pay-{run_id}-{round_}")
        await produce(kafka_bootstrap, topics.payments_commands.name, [command])
        await until_status(outage_system, account, number, "pending")
        for name, running in outage_system.running.items():
            exited = running.process.poll()
            assert exited is None, f"round {round_}: {name} exited\n{outage_system.tail(name)}"
    for name in ("invoice-sync", "payment-intake", "status-projector"):
        outage_system.wait_ready(name, timeout=30)
