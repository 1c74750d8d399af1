"""`invoice-sync-ops` as an operator runs it (a separate process) against invoice-sync on
real Kafka and PostgreSQL: a registration the provider refused and one retrying after an
outage are listed, retried now, and both end registered; lag is shown."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from invoice_sync_support import (
    InvoiceSyncParts,
    invoice_events,
    of_type,
    provider_invoices,
    sandbox,
    sandbox_provider,
    upserted,
)

from invoice_sync import ops
from kafka_tools import eventually, produce
from payments_contracts.topics import TopicRegistry

pytestmark = pytest.mark.integration

OPS = str(Path(sys.executable).parent / "invoice-sync-ops")


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        OPS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_failed_and_retrying_registrations_are_listed_and_retried(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    async with sandbox_provider() as provider_url:
        parts = await InvoiceSyncParts(database_url, kafka_bootstrap, topics, provider_url).start()
        env = {
            **os.environ,
            "PAYMENTS_DATABASE_URL": database_url,
            "PAYMENTS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "PAYMENTS_TOPIC_PREFIX": topics.prefix,
            "COLUMNS": "200",
        }
        try:
            assert parts.pool is not None
            await sandbox(
                provider_url, "POST", "/sandbox/refusals", {"account_id": "A", "invoice_number": "INV-1"}
            )
            await produce(kafka_bootstrap, topics.erp_invoices.name, [upserted("A", "INV-1")])
            await eventually(lambda: ops.failed(parts.pool), lambda rows: len(rows) == 1, what="a refusal")
            await sandbox(
                provider_url, "POST", "/sandbox/faults", {"target": "registration", "mode": "error"}
            )
            await produce(kafka_bootstrap, topics.erp_invoices.name, [upserted("A", "INV-2")])
            await eventually(lambda: ops.retrying(parts.pool), lambda rows: len(rows) == 1, what="a retry")

            code, out = await cli(env, "registrations")
            assert code == 0 and "INV-1" in out and "invoice_refused" in out and "INV-2" in out, out
            await sandbox(provider_url, "DELETE", "/sandbox/faults")
            await sandbox(provider_url, "DELETE", "/sandbox/refusals")
            code, out = await cli(env, "retry", "--all-failed", "--all-retrying")
            # INV-1 is asked again only because of the operator; INV-2's own retry may win the race.
            assert code == 0 and ("scheduled 2 provider call(s)" in out or "scheduled 1 provider" in out), out
            registered = await eventually(
                lambda: provider_invoices(provider_url),
                lambda held: {("A", "INV-1"), ("A", "INV-2")} <= set(held),
                what="both registered",
            )
            assert all(registered[("A", n)]["status"] == "registered" for n in ("INV-1", "INV-2"))
            events = await eventually(
                lambda: invoice_events(kafka_bootstrap, topics),
                lambda es: len(of_type(es, "invoice.registered")) == 2,
                what="both announced registered",
            )
            assert len(of_type(events, "invoice.registration_failed", "INV-1")) == 1
            assert await ops.failed(parts.pool) == [] and await ops.retrying(parts.pool) == []
            code, out = await cli(env, "lag")
            assert code == 0 and "erp.invoices" in out and "total lag: 0" in out, out
        finally:
            await parts.stop()
