"""Rebuild while serving: the API keeps answering from the old version, the switch is
atomic, the live projector continues on the new version from the rebuild's offsets,
and the rebuilt rows equal what the live projection produced; afterwards the service's
lag gauge shows the live version only."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from status_projector_support import (
    Clock,
    account_story,
    dump,
    portal_client,
    projector_pool,
    publish,
    requested,
)

from kafka_tools import eventually
from payments_contracts.topics import TopicRegistry
from status_projector import ops
from status_projector.entrypoints.http import InvoiceOut
from status_projector.projections import LiveProjection
from system import System, free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


async def _poll(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_rebuild_while_serving_then_switch(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock = Clock()
    await publish(kafka_bootstrap, topics, [e for i in range(30) for e in account_story(clock, f"A{i}")])
    pool = await projector_pool(database_url)
    stopping = asyncio.Event()
    live = LiveProjection(
        registry=topics,
        pool=pool,
        bootstrap=kafka_bootstrap,
        batch_size=200,
        switch_poll_s=0.1,
    )
    live_task = asyncio.create_task(live.run(stopping))
    client = portal_client(pool, topics, [*(f"A{i}" for i in range(30)), "LATE"])
    try:
        answers: list[tuple[int, str]] = []

        async def status(account: str, number: str) -> InvoiceOut | None:
            response = await client.get(f"/v1/accounts/{account}/invoices/{number}")
            answers.append((response.status_code, response.text[:300]))
            return InvoiceOut.model_validate(response.json()) if response.status_code == 200 else None

        async def every_account_projected() -> bool:
            # Partitions progress independently: one account projected says nothing of another.
            for i in range(30):
                invoice = await status(f"A{i}", f"A{i}-INV-2")
                if invoice is None or invoice.pay_status != "pending":
                    return False
            read = await status("A0", "A0-INV-0")
            return read is not None and read.pay_status == "paid"

        await _poll(every_account_projected)

        served: list[tuple[int, str]] = []
        serving = True

        async def keep_reading() -> None:
            while serving:
                invoice = await status("A0", "A0-INV-0")
                assert invoice is not None, f"the API stopped answering during the rebuild: {answers[-1]}"
                served.append((invoice.freshness.version, invoice.pay_status))
                await asyncio.sleep(0.01)

        reader = asyncio.create_task(keep_reading())
        ctx = ops.Projecting(pool, topics, kafka_bootstrap, batch_size=200)
        rebuilding = asyncio.create_task(ops.rebuild(ctx))
        # Traffic keeps arriving during the rebuild; the live projector applies it to v1.
        await publish(kafka_bootstrap, topics, account_story(clock, "LATE"))
        result = await rebuilding
        assert (result.version, result.previous) == (2, 1)

        await _poll(lambda: asyncio.sleep(0, live.version == 2))
        # After the switch the live projector feeds v2, continuing from the rebuild's offsets.
        pay = uuid.uuid4()
        await publish(kafka_bootstrap, topics, [requested(clock, "A5", pay, [("A5-INV-1", 1_000)])])

        async def after_switch_applied() -> bool:
            invoice = await status("A5", "A5-INV-1")
            return invoice is not None and invoice.pay_status == "pending"

        await _poll(after_switch_applied)
        serving = False
        await reader
        assert served, "nothing was read during the rebuild"
        assert {s for _, s in served} == {"paid"}  # every answer, from either version, was consistent
        versions = [v for v, _ in served]
        assert versions == sorted(versions)
        assert versions[0] == 1

        late = await status("LATE", "LATE-INV-0")
        assert late is not None
        assert late.pay_status == "paid"

        # The live-fed v2 equals a fresh rebuild (v3) of the same topics.
        fresh = await ops.rebuild(ctx, activate_when_done=False)
        assert await dump(pool, fresh.version) == await dump(pool, 2)
    finally:
        stopping.set()
        await asyncio.wait_for(live_task, 30)
        await client.aclose()
        await pool.close()


def _lag_series(url: str) -> dict[tuple[str, str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (s.labels["consumer"], s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "consumer_lag"
        for s in family.samples
    }


async def test_after_a_rebuild_and_switch_the_retired_version_exports_no_lag(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry, tmp_path: Path
) -> None:
    """The documented lag alert reads `consumer_lag`: a retired version that nobody feeds
    any more must not look like a consumer falling behind."""
    clock = Clock()
    await publish(kafka_bootstrap, topics, [e for i in range(5) for e in account_story(clock, f"M{i}")])
    system = System(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        log_dir=tmp_path / "logs",
        bin_dir=BIN,
        topic_prefix=topics.prefix,
        extra_env={"PAYMENTS_METRICS_INTERVAL_S": "0.2", "STATUS_PROJECTOR_SWITCH_POLL_S": "0.2"},
    )
    system.ports = {name: free_port() for name in system.ports}
    system.log_dir.mkdir(parents=True)
    service = system.start_one("status-projector")
    try:
        system.wait_ready("status-projector")

        def caught_up(version: str) -> Callable[[dict[tuple[str, str, str], float]], bool]:
            return lambda series: {c for c, _, _ in series} == {version} and not any(series.values())

        await eventually(
            lambda: asyncio.to_thread(_lag_series, service.url), caught_up("projection_v1"), what="v1 at 0"
        )
        rebuild = await asyncio.create_subprocess_exec(
            str(BIN / "status-projector-ops"),
            "rebuild",
            env=system.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await rebuild.communicate()
        assert rebuild.returncode == 0 and b"version 2 active (was 1)" in out, out.decode()
        # Events after the switch: the retired version would fall further behind each one.
        await publish(kafka_bootstrap, topics, account_story(clock, "AFTER"))
        series = await eventually(
            lambda: asyncio.to_thread(_lag_series, service.url),
            caught_up("projection_v2"),
            timeout=60,
            what="only the live version, at 0",
        )
        assert {t for _, t, _ in series} == {topics.invoices.name, topics.payments_events.name}
    finally:
        assert system.stop() == {"status-projector": 0}, system.tail("status-projector")
