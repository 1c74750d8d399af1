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

from payments_platform.ops import LagScope, partition_lag
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
    """Samples the gauges every `interval_s` (a failed sample is logged and retried).

    `consumers`: whose lag to export (None: every consumer with offsets stored in the
    schema). A consumer that leaves the scope (a read-model version retired by a rebuild)
    has its series removed, so a gauge nobody updates any more cannot look like lag.
    """

    def __init__(
        self,
        service: str,
        pool: asyncpg.Pool,
        bootstrap: str,
        *,
        interval_s: float = 15.0,
        outbox: bool = True,
        consumers: LagScope | None = None,
        extra: Sample | None = None,
    ) -> None:
        self._service = service
        self._pool = pool
        self._bootstrap = bootstrap
        self._interval_s = interval_s
        self._outbox = outbox
        self._consumers = consumers
        self._extra = extra
        self._lag_series: set[tuple[str, str, str]] = set()
        self.ready = False

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await run_rounds("ops gauges", self.once, stopping, idle_s=self._interval_s, busy=lambda _: False)
        finally:
            self.ready = False

    async def once(self) -> int:
        scope = None if self._consumers is None else await self._consumers(self._pool)
        exported = set()
        for row in await partition_lag(self._pool, self._bootstrap, scope):
            series = (row.consumer, row.topic, str(row.partition))
            CONSUMER_LAG.labels(*series).set(row.lag)
            exported.add(series)
        for gone in self._lag_series - exported:
            CONSUMER_LAG.remove(*gone)
        self._lag_series = exported
        if self._outbox:
            depth, set_aside = await self._pool.fetchrow(
                "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM outbox_unpublishable)"
            )
            OUTBOX_DEPTH.labels(self._service).set(depth)
            OUTBOX_SET_ASIDE.labels(self._service).set(set_aside)
        if self._extra is not None:
            await self._extra(self._pool)
        return 1
