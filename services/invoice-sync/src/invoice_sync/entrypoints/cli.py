"""`invoice-sync-ops`: what operators do with provider registrations.

invoice-sync-ops registrations                  # refused for good, and retrying after an outage
invoice-sync-ops retry ACCOUNT/INVOICE ... | --all-failed | --all-retrying
invoice-sync-ops redrive-dead-letters --topic erp.invoices
invoice-sync-ops lag
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer

from invoice_sync import ops
from invoice_sync.adapters.schema import install
from invoice_sync.adapters.unit_of_work import UnitsOfWork
from invoice_sync.settings import ERP_CONSUMER, SCHEMA, SERVICE, InvoiceSyncSettings
from payments_contracts.topics import TopicRegistry
from payments_platform import ops as shared_ops
from payments_platform.cli import console, progress, run, show, show_lag
from payments_platform.database import open_pool
from payments_platform.observability import configure_logging

app = typer.Typer(help="Operate invoice-sync: provider registrations.", no_args_is_help=True)
T = TypeVar("T")


def _with(work: Callable[[asyncpg.Pool, InvoiceSyncSettings], Awaitable[T]]) -> T:
    settings = InvoiceSyncSettings()
    configure_logging(SERVICE, "WARNING")

    async def go() -> T:
        pool = await open_pool(settings.database_url, SCHEMA, size=4, install=install)
        try:
            return await work(pool, settings)
        finally:
            await pool.close()

    return run(go)


@app.command()
def registrations() -> None:
    """Registrations the provider refused for good, and those retrying after a passing error."""

    async def both(pool: asyncpg.Pool, _: InvoiceSyncSettings) -> tuple[list, list]:  # type: ignore[type-arg]
        return await ops.failed(pool), await ops.retrying(pool)

    refused, again = _with(both)
    show(
        "refused by the provider",
        ("account", "invoice", "erp version", "refusal", "since"),
        [
            (r["account_id"], r["invoice_number"], r["erp_version"], r["refusal"], r["updated_at"])
            for r in refused
        ],
    )
    show(
        "retrying",
        ("account", "invoice", "action", "attempts", "next attempt", "last error"),
        [
            (
                r["account_id"],
                r["invoice_number"],
                r["action"],
                r["attempts"],
                r["next_attempt_at"],
                r["last_error"],
            )
            for r in again
        ],
    )


@app.command()
def retry(
    invoices: Annotated[list[str] | None, typer.Argument(help="ACCOUNT/INVOICE, one or more")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every refused registration")] = False,
    all_retrying: Annotated[bool, typer.Option("--all-retrying", help="Every retrying call, now")] = False,
) -> None:
    """Ask the provider again now."""
    keys: list[tuple[str, str]] = []
    for item in invoices or []:
        account, _, number = item.partition("/")
        if not number:
            console.print(f"{item}: give ACCOUNT/INVOICE")
            raise typer.Exit(2)
        keys.append((account, number))

    async def work(pool: asyncpg.Pool, settings: InvoiceSyncSettings) -> int:
        wanted = list(keys)
        if all_failed:
            wanted += [(r["account_id"], r["invoice_number"]) for r in await ops.failed(pool)]
        if all_retrying:
            wanted += [(r["account_id"], r["invoice_number"]) for r in await ops.retrying(pool)]
        with progress("retry registrations", unit="invoices") as update:
            return await ops.retry(
                UnitsOfWork(pool, TopicRegistry(settings.topic_prefix)), wanted, progress=update
            )

    console.print(f"scheduled {_with(work)} provider call(s)")


@app.command("redrive-dead-letters")
def redrive_dead_letters(
    topic: Annotated[str, typer.Option(help="erp.invoices (or erp.invoices.dlq)")] = "erp.invoices",
    all_services: Annotated[bool, typer.Option("--all", help="Dead letters of every service")] = False,
    dry_run: Annotated[bool, typer.Option(help="List, do not publish")] = False,
) -> None:
    """Publish invoice-sync's dead letters back to their source topic after a fix (each once)."""
    settings = InvoiceSyncSettings()
    with progress(f"re-drive {topic}") as update:
        result = run(
            lambda: shared_ops.redrive_dead_letters(
                settings.kafka_bootstrap,
                TopicRegistry(settings.topic_prefix),
                topic,
                service=None if all_services else SERVICE,
                operator=SERVICE,
                dry_run=dry_run,
                progress=update,
            )
        )
    verb = "would re-drive" if dry_run else "re-drove"
    console.print(f"examined {result.examined}, {verb} {result.redriven}")


@app.command()
def lag() -> None:
    """Per-partition lag of the ERP consumer."""

    async def work(pool: asyncpg.Pool, settings: InvoiceSyncSettings) -> list[shared_ops.PartitionLag]:
        topic = TopicRegistry(settings.topic_prefix).erp_invoices.name
        return await shared_ops.partition_lag(pool, settings.kafka_bootstrap, {ERP_CONSUMER: [topic]})

    show_lag(_with(work))


if __name__ == "__main__":
    app()
