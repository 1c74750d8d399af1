"""`status-projector`: consume `invoices` + `payments.events` into the read model and
serve it over HTTP. The projector publishes nothing, so it runs without a relay."""

from __future__ import annotations

from payments_shared.sandbox import UnsafeConfiguration
from payments_shared.service import ServiceHost, run_service, start_up
from status_projector.adapters.postgres import SCHEMA, install
from status_projector.domain.access import PortalKeys
from status_projector.entrypoints.http import build_app
from status_projector.projection import LiveProjection
from status_projector.settings import SERVICE, ProjectorSettings


async def serve(settings: ProjectorSettings, keys: PortalKeys) -> None:
    # The read model is derived from the topics and publishes nothing: see open_pool.
    registry, pool = await start_up(SERVICE, settings, schema=SCHEMA, install=install, derived_only=True)
    live = LiveProjection(
        registry=registry,
        pool=pool,
        bootstrap=settings.kafka_bootstrap,
        batch_size=settings.batch_size,
        switch_poll_s=settings.switch_poll_s,
    )
    host = ServiceHost(
        name=SERVICE,
        app=build_app(pool, registry, keys, provider_configured=settings.provider_configured),
        host=settings.http_host,
        port=settings.http_port,
        pool=pool,
        relay=None,
        background=[live],
    )
    await host.serve()


def main() -> None:
    settings = ProjectorSettings()
    try:
        keys = settings.portal_keys()  # refuses to start without keys of our own
    except (UnsafeConfiguration, OSError, ValueError) as exc:
        raise SystemExit(f"{SERVICE}: {exc}") from None
    run_service(lambda: serve(settings, keys))
