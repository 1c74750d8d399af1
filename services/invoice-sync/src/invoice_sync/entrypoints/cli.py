"""`invoice-sync-ops`: what operators do with provider registrations.

invoice-sync-ops registrations                  # refused for good, and retrying after an outage
invoice-sync-ops retry ACCOUNT/INVOICE ... | --all-failed | --all-retrying
invoice-sync-ops redrive-dead-letters [--topic erp.invoices] [--dry-run]
invoice-sync-ops lag
invoice-sync-ops set-aside | republish-set-aside ID ... | --all [--apply]
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
import typer

from invoice_sync import ops
from invoice_sync.adapters.schema import install
from invoice_sync.adapters.unit_of_work import UnitsOfWork
from invoice_sync.settings import ERP_CONSUMER, SCHEMA, SERVICE, InvoiceSyncSettings
from payments_contracts.topics import TopicRegistry
from payments_platform.cli import OperatedService, add_shared_commands, console, progress, show
from payments_platform.ops import fixed_scope

app = typer.Typer(help="Operate invoice-sync: provider registrations.", no_args_is_help=True)
OPERATED = OperatedService(
    service=SERVICE,
    schema=SCHEMA,
    settings=InvoiceSyncSettings,
    install=install,
    lag_scope=lambda registry: fixed_scope({ERP_CONSUMER: [registry.erp_invoices.name]}),
)
_with = OPERATED.with_pool


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


add_shared_commands(app, OPERATED)

if __name__ == "__main__":
    app()
