"""`status-projector`: consume `invoices` + `payments.events` into the read model and
serve it over HTTP. It publishes only dead letters, through the same outbox relay as
every other service."""

from __future__ import annotations

from payments_platform.database import open_read_pool
from payments_platform.health import BrokerProbe
from payments_platform.messaging import OutboxRelay
from payments_platform.ops_metrics import OpsGauges
from payments_platform.retention import Pruner, RetentionSettings
from payments_platform.sandbox import UnsafeConfiguration
from payments_platform.service import ServiceHost, collect_garbage_less_often, run_service, start_up
from status_projector.adapters.schema import install
from status_projector.domain.access import PortalKeys
from status_projector.entrypoints.http import build_app
from status_projector.entrypoints.memory import map_large_blocks_apart
from status_projector.entrypoints.merchants import follow_merchant_file, with_merchant_routes
from status_projector.ops import lag_scope
from status_projector.projections import LiveProjection, Snapshots, collector_allocations
from status_projector.settings import SCHEMA, SERVICE, ProjectorSettings, portal_keys


async def serve(settings: ProjectorSettings, keys: PortalKeys) -> None:
    map_large_blocks_apart()
    retention = RetentionSettings()
    registry, pool = await start_up(SERVICE, settings, schema=SCHEMA, install=install)
    collect_garbage_less_often(collector_allocations(settings.batch_size))
    relay = OutboxRelay(pool, settings.kafka_bootstrap, service=SERVICE)
    replica = (
        await open_read_pool(settings.read_database_url, SCHEMA, size=settings.db_pool_size)
        if settings.read_database_url
        else None
    )
    app = with_merchant_routes(
        build_app(
            pool,
            registry,
            keys,
            provider_configured=settings.provider_configured,
            replica=replica,
            read_deadline_s=settings.read_deadline_s,
            consistency_wait_s=settings.consistency_wait_s,
        )
    )
    if settings.merchant_config is not None:
        follow_merchant_file(
            app, settings.merchant_config, lambda m: portal_keys(m, sandbox=settings.sandbox)
        )
    live = LiveProjection(
        registry=registry,
        pool=pool,
        bootstrap=settings.kafka_bootstrap,
        batch_size=settings.batch_size,
        switch_poll_s=settings.switch_poll_s,
    )
    host = ServiceHost(
        name=SERVICE,
        app=app,
        host=settings.http_host,
        port=settings.http_port,
        pool=pool,
        broker=BrokerProbe(settings.kafka_bootstrap),
        relay=relay,
        background=[
            live,
            Snapshots(pool, settings.snapshot_interval_h * 3600),
            Pruner.for_service(pool, SERVICE, retention),
            OpsGauges(
                SERVICE,
                pool,
                settings.kafka_bootstrap,
                interval_s=settings.metrics_interval_s,
                # The version the API serves: a rebuild's version is watched with `lag`,
                # a retired one is fed by nobody.
                consumers=lag_scope(registry, building=False),
            ),
        ],
    )
    try:
        await host.serve()
    finally:
        if replica is not None:
            replica.terminate()  # a frozen replica must not hold the exit


def main() -> None:
    settings = ProjectorSettings()
    try:
        keys = settings.portal_keys()  # refuses to start without keys of our own
    except (UnsafeConfiguration, OSError, ValueError) as exc:
        raise SystemExit(f"{SERVICE}: {exc}") from None
    run_service(lambda: serve(settings, keys))
