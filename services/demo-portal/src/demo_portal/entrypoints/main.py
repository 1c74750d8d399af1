"""`demo-portal`: the reference portal backend and page, on FastStream and FastAPI."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream_fastapi import FastStreamAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from demo_portal.adapters.messaging import Messaging, messaging, specification
from demo_portal.domain.portal import Portals, portals_from_config
from demo_portal.entrypoints.http import build_routes
from demo_portal.handlers import Portal
from demo_portal.settings import SERVICE, DemoPortalSettings
from payments_contracts.topics import TopicRegistry
from payments_platform import tracing
from payments_platform.observability import configure_logging
from payments_portal_client import KafkaSecurity

log = logging.getLogger(__name__)


def load_portals(settings: DemoPortalSettings) -> Portals:
    config: dict[str, Any] = {}
    if settings.merchant_config is not None:
        config = yaml.safe_load(Path(settings.merchant_config).read_text()) or {}
    return portals_from_config(config, settings.api_keys, sandbox=settings.sandbox)


def build_app(settings: DemoPortalSettings) -> tuple[FastStreamAPI, Messaging]:
    topics = TopicRegistry(settings.topic_prefix)
    # The same PAYMENTS_KAFKA_* variables as the services (TLS, SASL), read by the client's type.
    wiring = messaging(settings.kafka_bootstrap, topics, KafkaSecurity.from_env())
    portal = Portal(
        portals=load_portals(settings),
        messaging=wiring,
        read_api_url=settings.read_api_url,
        timeout_s=settings.outcome_timeout_s,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await portal.close()

    app = FastAPI(
        title=SERVICE,
        version="1.0.0",
        description="Reference portal backend for the seed portals",
        lifespan=lifespan,
    )

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "alive", "service": SERVICE}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        checks = {
            "broker": await wiring.broker.ping(timeout=2.0),
            "outcomes": await wiring.outcomes_ready(),
        }
        return JSONResponse(checks, status_code=200 if all(checks.values()) else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    build_routes(app, portal, settings.poll_interval_ms)
    tracing.instrument_app(app)
    asgi = FastStreamAPI(
        wiring.broker,
        application=app,
        specification=specification(wiring.broker),
        asyncapi_path="/asyncapi",
        safe_connection=True,
    )
    return asgi, wiring


class _Server(uvicorn.Server):
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die of
    # the signal; a stop we asked for should exit 0 like every other service.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, *_: object) -> None:
        self.should_exit = True


def main() -> None:
    settings = DemoPortalSettings()
    configure_logging(SERVICE, settings.log_level)
    tracing.configure(SERVICE)
    app, _ = build_app(settings)
    server = _Server(
        uvicorn.Config(
            app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
        )
    )
    try:
        asyncio.run(server.serve())
    finally:
        tracing.shutdown()
