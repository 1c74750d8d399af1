"""Retention: every dedupe and idempotency record is kept for a stated window, then pruned
in the background (docs/product.md, "Bounded records"). The windows and why each is long
enough are in docs/decisions/0007-retention-windows.md.

The pruner deletes in small batches, each its own short statement that picks rows by
`ctid` and skips rows another pruner holds, so it never holds long locks and two
instances of a service share the work.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from prometheus_client import Counter
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .workers import run_rounds

log = logging.getLogger(__name__)

PRUNED = Counter(
    "retention_pruned_rows_total", "Rows deleted once older than their retention window", ["service", "table"]
)

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_WHOLE = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*[wdhms])+\s*")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
LONGEST = timedelta(days=3650)


def parse_window(value: Any) -> Any:
    """'30d', '36h', '1d12h', '90m', '2w' or a number of seconds; anything else (an ISO 8601
    duration such as 'P7D', a timedelta) is left to pydantic."""
    if isinstance(value, bool):
        raise ValueError("a retention window is a duration, not a flag")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return timedelta(seconds=float(text))
        if _WHOLE.fullmatch(text):
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))
    return value


def _bounded(window: timedelta) -> timedelta:
    if window <= timedelta(0):
        # A record pruned as it is written dedupes nothing: every repeat would take effect.
        raise ValueError("a retention window must be longer than zero")
    if window > LONGEST:
        raise ValueError(f"a retention window must be at most {LONGEST.days} days")
    return window


Window = Annotated[timedelta, BeforeValidator(parse_window), AfterValidator(_bounded)]


class RetentionSettings(BaseSettings):
    """Windows of the records every service keeps through the consume/outbox block, and the
    pruner's pace. Services with records of their own extend this class."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    processed_events: Window = Field(
        timedelta(days=7), validation_alias="PAYMENTS_RETENTION_PROCESSED_EVENTS"
    )
    unpublishable: Window = Field(timedelta(days=30), validation_alias="PAYMENTS_RETENTION_UNPUBLISHABLE")
    interval_s: float = Field(60.0, gt=0, validation_alias="PAYMENTS_RETENTION_INTERVAL_S")
    batch_size: int = Field(1000, gt=0, le=100_000, validation_alias="PAYMENTS_RETENTION_BATCH_SIZE")


@dataclass(frozen=True)
class Retained:
    """A table whose rows are deleted once `stamp` is older than `window`, unless
    `keep_while` (an SQL condition over the row, aliased `r`) says one is still needed."""

    table: str
    stamp: str
    window: timedelta
    keep_while: str | None = None

    def __post_init__(self) -> None:
        for name in (self.table, self.stamp):
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"not a plain table or column name: {name!r}")
        _bounded(self.window)

    def delete_batch_sql(self) -> str:
        old = f"r.{self.stamp} < now() - $1::interval"
        if self.keep_while:
            old += f" AND NOT ({self.keep_while})"
        # The condition is checked again on the rows deleted: a row changed since the
        # inner select is deleted only if it is still old.
        return f"""
            DELETE FROM {self.table} AS r
             WHERE r.ctid = ANY (ARRAY(
                       SELECT r.ctid FROM {self.table} AS r WHERE {old}
                        LIMIT $2 FOR UPDATE SKIP LOCKED))
               AND {old}
        """


def messaging_tables(settings: RetentionSettings) -> list[Retained]:
    """The consume/outbox block's own records, in every service's schema."""
    return [
        Retained("processed_events", "processed_at", settings.processed_events),
        Retained("outbox_unpublishable", "set_aside_at", settings.unpublishable),
    ]


class Pruner:
    """Deletes expired rows of its tables, a batch per table per round, in the background."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        service: str,
        tables: Iterable[Retained],
        batch_size: int = 1000,
        interval_s: float = 60.0,
        pause_s: float = 0.05,
    ) -> None:
        self._pool = pool
        self._service = service
        self.tables = list(tables)
        names = [t.table for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError(f"a table is registered twice: {sorted(names)}")
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._pause_s = pause_s
        self._unreported: collections.Counter[str] = collections.Counter()
        # Pruning can wait; it never makes a service unready.
        self.ready = True

    @classmethod
    def for_service(
        cls,
        pool: asyncpg.Pool,
        service: str,
        settings: RetentionSettings,
        own: Iterable[Retained] = (),
    ) -> Pruner:
        return cls(
            pool,
            service=service,
            tables=[*messaging_tables(settings), *own],
            batch_size=settings.batch_size,
            interval_s=settings.interval_s,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        await run_rounds("retention pruner", self.prune_once, stopping, idle_s=self._interval_s)

    async def prune_once(self) -> int:
        """Delete at most one batch from each table; returns the rows deleted."""
        deleted = sum((await self._prune_batches()).values())
        if deleted:
            await asyncio.sleep(self._pause_s)  # a backlog is worked off without crowding out the service
        elif self._unreported:
            log.info("expired records pruned", extra={"pruned": dict(self._unreported)})
            self._unreported.clear()
        return deleted

    async def prune_all(self) -> dict[str, int]:
        """Delete every expired row now (ops and tests); the rows deleted per table."""
        total: collections.Counter[str] = collections.Counter({t.table: 0 for t in self.tables})
        while True:
            deleted = await self._prune_batches()
            total.update(deleted)
            if not any(deleted.values()):
                return dict(total)

    async def _prune_batches(self) -> dict[str, int]:
        deleted = {}
        async with self._pool.acquire() as conn:
            for table in self.tables:
                status = await conn.execute(table.delete_batch_sql(), table.window, self._batch_size)
                count = int(status.split()[-1])
                if count:
                    PRUNED.labels(self._service, table.table).inc(count)
                    self._unreported[table.table] += count
                deleted[table.table] = count
        return deleted
