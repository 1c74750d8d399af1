"""What every service's ops CLI shares, so they look and behave alike (typer + rich):
progress bars on long work, the per-partition lag table, running async work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

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

from payments_platform.ops import PartitionLag

console = Console()
T = TypeVar("T")


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
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
