"""What every service's ops CLI shares, so they look and behave alike (typer + rich):
progress bars on long work, tables, running async work, and the commands every service
offers (`add_shared_commands`): lag, re-driving dead letters, set-aside outbox rows."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from payments_contracts.topics import SERVICE_CHANNELS, TopicRegistry
from payments_platform import ops
from payments_platform.database import open_pool
from payments_platform.observability import configure_logging
from payments_platform.ops import LagScope, PartitionLag
from payments_platform.settings import CommonSettings

console = Console()
T = TypeVar("T")
S = TypeVar("S", bound=CommonSettings)


class _Rate(TextColumn):
    def __init__(self, unit: str) -> None:
        super().__init__("")
        self._unit = unit

    def render(self, task):  # type: ignore[no-untyped-def]
        speed = task.finished_speed or task.speed
        return f"{speed:,.0f} {self._unit}/s" if speed else f"- {self._unit}/s"


@contextmanager
def progress(what: str, unit: str = "ev") -> Iterator[Callable[[int, int], None]]:
    """A bar for long work; call the yielded function with (done, total)."""
    columns = (
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))

        yield update


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run async work to its end from a command."""

    async def go() -> T:
        return await work()

    return asyncio.run(go())


def show_lag(rows: Sequence[PartitionLag]) -> None:
    table = Table("consumer", "topic", "partition", "next offset", "end offset", "lag")
    for r in rows:
        table.add_row(
            r.consumer, r.topic, str(r.partition), str(r.next_offset), str(r.end_offset), str(r.lag)
        )
    console.print(table)
    console.print(f"total lag: {sum(r.lag for r in rows):,}")


def show(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table, or a line saying there is nothing."""
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(*columns, title=title)
    for row in rows:
        # Text, not markup: an error such as "tagged-union[...]" is data, not a style.
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(table)


def say(line: str) -> None:
    """One line of output, printed as it is (no markup, no wrapping)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class OperatedService(Generic[S]):
    """The service an ops CLI operates: how a command reaches its database, and what the
    commands every ops CLI shares need to know of it."""

    service: str
    schema: str
    settings: Callable[[], S]
    install: Callable[[asyncpg.Connection], Awaitable[None]]
    # The consumers whose lag `lag` shows, for a deployment's topic registry.
    lag_scope: Callable[[TopicRegistry], LagScope]

    def registry(self, settings: CommonSettings) -> TopicRegistry:
        return TopicRegistry(settings.topic_prefix, settings.topic_partitions)

    def with_pool(self, work: Callable[[asyncpg.Pool, S], Awaitable[T]]) -> T:
        """Run `work` on a small pool of the service's schema (installed when missing)."""
        settings = self.settings()
        configure_logging(self.service, "WARNING")

        async def go() -> T:
            pool = await open_pool(settings.database_url, self.schema, size=4, install=self.install)
            try:
                return await work(pool, settings)
            finally:
                await pool.close()

        return run(go)


def add_shared_commands(app: typer.Typer, operated: OperatedService[S]) -> None:
    """`lag`, `redrive-dead-letters`, `set-aside` and `republish-set-aside`, the same in
    every service's ops CLI."""
    service = operated.service
    inputs = [t.name for t in SERVICE_CHANNELS[service]["receives"]]

    @app.command(help=f"Per-partition lag of {service}'s consumers (offsets stored in its database).")
    def lag() -> None:
        async def work(pool: asyncpg.Pool, settings: S) -> list[PartitionLag]:
            scope = await operated.lag_scope(operated.registry(settings))(pool)
            return await ops.partition_lag(pool, settings.kafka_bootstrap, scope)

        show_lag(operated.with_pool(work))

    @app.command(
        "redrive-dead-letters",
        help=f"Publish {service}'s dead letters of {', '.join(inputs)} back to their source topic "
        "after a fix (each once); --dry-run lists each with its source position and error.",
    )
    def redrive_dead_letters(
        topic: Annotated[
            str | None,
            typer.Option(help="A topic the service reads (or its .dlq), without the prefix; default: each"),
        ] = None,
        all_services: Annotated[bool, typer.Option("--all", help="Dead letters of every service")] = False,
        dry_run: Annotated[bool, typer.Option(help="List, do not publish")] = False,
    ) -> None:
        settings = operated.settings()
        if topic is not None and topic.removesuffix(".dlq") not in inputs:
            say(f"{service} reads {', '.join(inputs)}, not {topic}")
            raise typer.Exit(2)

        def listed(letter: ops.DeadLetter) -> None:
            if dry_run:
                say(f"{letter.topic}:{letter.partition}:{letter.offset} from {letter.source}")
                say(textwrap.indent(letter.error, "    "))

        verb = "would re-drive" if dry_run else "re-drove"
        for name in [topic] if topic is not None else inputs:
            with progress(f"re-drive {name}") as update:
                result = run(
                    _redrive(
                        operated,
                        settings,
                        name,
                        every_service=all_services,
                        dry_run=dry_run,
                        progress=update,
                        on_message=listed,
                    )
                )
            say(f"{name}: examined {result.examined}, {verb} {result.redriven}")

    @app.command(
        "set-aside",
        help="Outbox rows Kafka refused for good (too large, topic missing), set aside so they "
        "do not block the rows behind them: re-publish them with republish-set-aside.",
    )
    def set_aside() -> None:
        rows = operated.with_pool(lambda pool, _: ops.set_aside(pool))
        for r in rows:
            say(_described(r))
            written, set_at = (t.isoformat(" ", "seconds") for t in (r.created_at, r.set_aside_at))
            say(f"    written {written}, set aside {set_at}")
            say(f"    {r.reason}")
        say(f"{len(rows)} set-aside row(s)")

    @app.command(
        "republish-set-aside",
        help="Move set-aside outbox rows back to the outbox once the cause is fixed; the relay "
        "publishes each with its own event id. Without --apply it only says what it would move.",
    )
    def republish_set_aside(
        ids: Annotated[list[int] | None, typer.Argument(help="Ids shown by set-aside")] = None,
        all_rows: Annotated[bool, typer.Option("--all", help="Every set-aside row")] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run/--apply", help="Only say what would move (the default)")
        ] = True,
    ) -> None:
        if bool(ids) == all_rows:
            say("give the ids to re-publish or --all")
            raise typer.Exit(2)
        wanted = None if all_rows else ids
        moved = operated.with_pool(lambda pool, _: ops.republish_set_aside(pool, wanted, dry_run=dry_run))
        for r in moved:
            say(_described(r))
        if wanted is not None and (missing := sorted(set(wanted) - {r.id for r in moved})):
            say(f"not set aside: {', '.join(map(str, missing))}")
        if dry_run:
            say(f"would move {len(moved)} row(s) back to the outbox; run again with --apply")
        else:
            say(f"moved {len(moved)} row(s) back to the outbox; the relay publishes them")


def _redrive(
    operated: OperatedService[S],
    settings: CommonSettings,
    topic: str,
    *,
    every_service: bool,
    dry_run: bool,
    progress: ops.Progress,
    on_message: Callable[[ops.DeadLetter], None],
) -> Callable[[], Awaitable[ops.Redriven]]:
    return lambda: ops.redrive_dead_letters(
        settings.kafka_bootstrap,
        operated.registry(settings),
        topic,
        service=None if every_service else operated.service,
        operator=operated.service,
        dry_run=dry_run,
        progress=progress,
        on_message=on_message,
    )


def _described(row: ops.SetAside) -> str:
    key = "none" if row.key is None else row.key.decode("utf-8", errors="replace")
    return f"{row.id}  {row.topic}  key {key}  {row.size} bytes  {row.event_type} {row.event_id}"
