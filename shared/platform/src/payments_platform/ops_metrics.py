"""Prometheus gauges an operator alerts on (docs/operations.md, "Alerts"): consumer lag per
partition, outbox depth and set-aside outbox rows, sampled by a background part of every
service; a service adds its own samples (payment-intake: the age of its oldest open
payment)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import Gauge

from payments_platform.ops import partition_lag
from payments_platform.workers import run_rounds

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "consumer_lag",
    "Records on the partition not yet applied (end offset minus the offset stored in the database)",
    ["consumer", "topic", "partition"],
)
OUTBOX_DEPTH = Gauge("outbox_depth", "Outbox rows written and not yet published to Kafka", ["service"])
# Not `outbox_unpublishable`: the counter outbox_unpublishable_total owns that name.
OUTBOX_SET_ASIDE = Gauge(
    "outbox_set_aside",
    "Outbox rows Kafka refused for good, waiting in outbox_unpublishable for an operator",
    ["service"],
)

Sample = Callable[[asyncpg.Pool], Awaitable[None]]


class OpsGauges:
    """Samples the gauges every `interval_s` (a failed sample is logged and retried)."""

    def __init__(
        self,
        service: str,
        pool: asyncpg.Pool,
        bootstrap: str,
        *,
        interval_s: float = 15.0,
        outbox: bool = True,
        extra: Sample | None = None,
    ) -> None:
        self._service = service
        self._pool = pool
        self._bootstrap = bootstrap
        self._interval_s = interval_s
        self._outbox = outbox
        self._extra = extra
        self.ready = False

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await run_rounds("ops gauges", self.once, stopping, idle_s=self._interval_s, busy=lambda _: False)
        finally:
            self.ready = False

    async def once(self) -> int:
        for row in await partition_lag(self._pool, self._bootstrap):
            CONSUMER_LAG.labels(row.consumer, row.topic, str(row.partition)).set(row.lag)
        if self._outbox:
            depth, set_aside = await self._pool.fetchrow(
                "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM outbox_unpublishable)"
            )
            OUTBOX_DEPTH.labels(self._service).set(depth)
            OUTBOX_SET_ASIDE.labels(self._service).set(set_aside)
        if self._extra is not None:
            await self._extra(self._pool)
        return 1
