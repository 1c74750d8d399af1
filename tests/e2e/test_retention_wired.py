"""Every service, run as an OS process, prunes its expired dedupe records in the background
(windows shortened through the environment), counts them on /metrics, and keeps the
idempotency key of a payment that is still open.

status-projector writes no dedupe record of its own (its rules make a repeat harmless,
docs/decisions/0035-projector-no-dedupe-record.md); its pruner is shown wired on a row
an earlier release left behind."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from erp_invoices import erp_invoice
from kafka_tools import eventually, produce
from payments_contracts.payments import PayerPortal, PayInvoice, PayInvoicePayload
from payments_contracts.topics import TopicRegistry
from system import System, free_port

pytestmark = pytest.mark.e2e

SERVICES = {
    "invoice-sync": "invoice_sync",
    "payment-intake": "payment_intake",
    "status-projector": "status_projector",
}


async def _pruned(system: System, service: str) -> float:
    async with httpx.AsyncClient(base_url=system.url(service)) as client:
        text = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "retention_pruned_rows"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("table") == "processed_events"
    )


async def test_each_service_prunes_expired_event_ids_and_keeps_the_key_of_an_open_payment(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry, tmp_path: Path
) -> None:
    system = System(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        log_dir=tmp_path / "logs",
        bin_dir=Path(sys.executable).parent,
        topic_prefix=topics.prefix,
        extra_env={
            "PAYMENTS_RETENTION_PROCESSED_EVENTS": "2s",
            "PAYMENTS_RETENTION_INTERVAL_S": "0.3",
            "PAYMENT_INTAKE_RETENTION_COMMANDS": "2s",
        },
    )
    system.ports = {name: free_port() for name in system.ports}
    system.start()
    db = await asyncpg.connect(database_url)
    try:
        invoice = erp_invoice("ACC-W", "INV-W")
        await produce(kafka_bootstrap, topics.erp_invoices.name, [invoice])
        await eventually(
            lambda: db.fetchval(
                "SELECT registered FROM payment_intake.invoices WHERE invoice_number = 'INV-W'"
            ),
            lambda registered: registered is True,
            timeout=60,
            what="the invoice registered, as payment-intake knows it",
        )
        command = PayInvoice.originating(
            producer="portal",
            account_id="ACC-W",
            payload=PayInvoicePayload(idempotency_key="key-w", invoice_number="INV-W", method=PayerPortal()),
        )
        await produce(kafka_bootstrap, topics.payments_commands.name, [command])
        await eventually(
            lambda: db.fetchval("SELECT status FROM payment_intake.payments"),
            lambda status: status == "checkout_open",
            timeout=60,
            what="the checkout opened",
        )
        # The projector applied the invoice's and the payment's events without a dedupe row.
        await eventually(
            lambda: db.fetchval("SELECT pay_status FROM status_projector.invoices_v1"),
            lambda status: status == "pending",
            timeout=60,
            what="the projector showing the payment",
        )
        assert await db.fetchval("SELECT count(*) FROM status_projector.processed_events") == 0
        await db.execute(
            "INSERT INTO status_projector.processed_events (consumer, event_id, processed_at) "
            "VALUES ('projection_v1', gen_random_uuid(), now() - interval '1 hour')"
        )

        for service, schema in SERVICES.items():
            await eventually(
                lambda s=service: _pruned(system, s),
                lambda n: n > 0,
                timeout=30,
                what=f"{service} to prune expired event ids",
            )
            await eventually(
                lambda s=schema: db.fetchval(f"SELECT count(*) FROM {s}.processed_events"),
                lambda n: n == 0,
                timeout=30,
                what=f"{schema}.processed_events emptied",
            )
        # Older than its 2 s window, but its payment is open: kept.
        assert (
            await db.fetchval("SELECT count(*) FROM payment_intake.commands WHERE idempotency_key = 'key-w'")
            == 1
        )
    finally:
        await db.close()
        unclean = system.stop_cleanly()
        assert not unclean, f"services did not stop cleanly on SIGTERM:\n{unclean}"
