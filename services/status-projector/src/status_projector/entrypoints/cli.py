"""`status-projector-ops`: what operators do with the read model.

status-projector-ops rebuild                       # new version from the newest snapshot (or offset 0)
status-projector-ops snapshot                      # the active version's rows and offsets, for rebuilds
status-projector-ops replay --from 2025-01-31T12:00:00Z
status-projector-ops lag
status-projector-ops parked
status-projector-ops redrive-dead-letters [--topic invoices] [--all] [--dry-run]
status-projector-ops set-aside | republish-set-aside ID ... | --all [--apply]
status-projector-ops new-api-key                   # a merchant's read-API key and its digest
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.table import Table

from payments_platform.cli import OperatedService, add_shared_commands, console
from payments_platform.cli import progress as _progress
from payments_platform.service import collect_garbage_less_often
from status_projector import ops
from status_projector.adapters.schema import install
from status_projector.projections import collector_allocations
from status_projector.settings import SCHEMA, SERVICE, ProjectorSettings

app = typer.Typer(help="Operate the status-projector read model.", no_args_is_help=True)
T = TypeVar("T")
OPERATED = OperatedService(
    service=SERVICE,
    schema=SCHEMA,
    settings=ProjectorSettings,
    install=install,
    lag_scope=ops.lag_scope,
)


def _run(work: Callable[[ops.Projecting], Awaitable[T]]) -> T:
    async def projecting(pool: asyncpg.Pool, settings: ProjectorSettings) -> T:
        # a rebuild decodes millions of events, in its own (larger) batches
        collect_garbage_less_often(collector_allocations(settings.rebuild_batch_size))
        return await work(
            ops.Projecting(
                pool=pool,
                registry=OPERATED.registry(settings),
                bootstrap=settings.kafka_bootstrap,
                batch_size=settings.batch_size,
                rebuild_batch_size=settings.rebuild_batch_size,
                rebuild_workers=settings.rebuild_workers,
                dsn=settings.database_url,
            )
        )

    return OPERATED.with_pool(projecting)


@app.command()
def rebuild(
    switch: Annotated[bool, typer.Option(help="Activate the new version when it has caught up")] = True,
    keep: Annotated[int, typer.Option(help="Versions to keep, the new one included")] = 2,
    from_snapshot: Annotated[
        bool,
        typer.Option(help="Start from the newest snapshot of the current rules, not the first offset"),
    ] = True,
) -> None:
    """Rebuild the read model into a new version while the current one keeps serving (from
    the newest snapshot, else the beginning of the topics); then switch the API and the
    live projector to it atomically."""
    with _progress("rebuild") as update:
        result = _run(
            lambda ctx: ops.rebuild(
                ctx,
                activate_when_done=switch,
                keep_versions=keep,
                progress=update,
                from_snapshot=from_snapshot,
            )
        )
    state = "active" if switch else "built, not active"
    start = f"snapshot {result.snapshot}" if result.snapshot is not None else "the first offset"
    console.print(
        f"version {result.version} {state} (was {result.previous}); {result.events:,} events in "
        f"{result.seconds:.1f} s from {start}; dropped versions {result.dropped or 'none'}"
    )


@app.command()
def snapshot(
    keep: Annotated[int, typer.Option(help="Snapshots to keep, the new one included")] = 2,
) -> None:
    """Snapshot the active version (rows and offsets) for rebuilds to start from."""
    taken = _run(lambda ctx: ops.snapshot(ctx, keep=keep))
    console.print(f"snapshot {taken.snapshot} of version {taken.version}: {taken.invoices:,} invoices")


def _timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def replay(
    from_: Annotated[str, typer.Option("--from", help="ISO timestamp, e.g. 2025-01-31T12:00:00Z")],
) -> None:
    """Re-apply every event since a time into the active version (idempotent: what was
    applied changes nothing, what was lost takes effect)."""
    since = _timestamp(from_)
    with _progress(f"replay since {since.isoformat()}") as update:
        events = _run(lambda ctx: ops.replay(ctx, since, progress=update))
    console.print(f"replayed {events:,} events")


@app.command()
def parked() -> None:
    """Events the active version keeps parked, by reason."""
    counts = _run(lambda ctx: ops.parked_count(ctx.pool))
    table = Table("reason", "events")
    for reason, n in sorted(counts.items()):
        table.add_row(reason, str(n))
    console.print(table if counts else "nothing parked")


@app.command()
def openapi(
    out: Annotated[str | None, typer.Option(help="Target file")] = None,
    check: Annotated[bool, typer.Option(help="Exit 1 when the file is stale")] = False,
) -> None:
    """Generate the read-model API's OpenAPI document (committed; a unit test checks it)."""
    from pathlib import Path

    from status_projector.entrypoints.openapi import DOCUMENT

    target = Path(out) if out else None
    if check:
        if DOCUMENT.is_stale(target):
            console.print(f"{target or DOCUMENT.path} is stale; run status-projector-ops openapi")
            raise typer.Exit(1)
        return
    console.print(f"wrote {DOCUMENT.write(target)}")


@app.command("new-api-key")
def new_api_key() -> None:
    """A new read-API key for a merchant's portal backend, and the line for the merchant file.

    Give the key to the merchant (it is shown once, stored nowhere); put the digest under
    the merchant's `api_keys`. To rotate, add the new digest next to the old one, switch
    the portal backend to the new key, then remove the old digest.
    """
    from status_projector.domain.access import digest_of
    from status_projector.domain.access import new_api_key as generate

    key = generate()
    print(f"key:    {key}")
    print(f"digest: {digest_of(key)}")


add_shared_commands(app, OPERATED)

if __name__ == "__main__":
    app()
