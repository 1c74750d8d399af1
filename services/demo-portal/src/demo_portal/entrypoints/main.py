"""`demo-portal`: the reference portal backend and page, on FastStream and FastAPI."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from demo_portal.adapters.messaging import Messaging, messaging
from demo_portal.domain.portal import Portals, portals_from_config
from demo_portal.entrypoints.http import build_routes
from demo_portal.handlers import Portal
from demo_portal.settings import SERVICE, DemoPortalSettings
from payments_shared.observability import configure_logging
from payments_shared.topics import TopicRegistry

log = logging.getLogger(__name__)


def load_portals(settings: DemoPortalSettings) -> Portals:
    config: dict[str, Any] = {}
    if settings.merchant_config is not None:
        config = yaml.safe_load(Path(settings.merchant_config).read_text()) or {}
    return portals_from_config(config, settings.api_keys, sandbox=settings.sandbox)


def build_app(settings: DemoPortalSettings) -> tuple[FastAPI, Messaging]:
    topics = TopicRegistry(settings.topic_prefix)
    wiring = messaging(settings.kafka_bootstrap, topics)
    portal = Portal(
        portals=load_portals(settings),
        messaging=wiring,
        read_api_url=settings.read_api_url,
        timeout_s=settings.outcome_timeout_s,
    )
    app = FastAPI(title=SERVICE, version="1.0.0", description="Reference portal backend for the seed portals")
    wiring.router.on_broker_shutdown(lambda _app: portal.close())

    @wiring.router.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "alive", "service": SERVICE}

    @wiring.router.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        broker = await wiring.router.broker.ping(timeout=2.0)
        return JSONResponse({"broker": broker}, status_code=200 if broker else 503)

    app.include_router(wiring.router)
    build_routes(app, portal, settings.poll_interval_ms)
    return app, wiring


def main() -> None:
    settings = DemoPortalSettings()
    configure_logging(SERVICE, settings.log_level)
    app, _ = build_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
        )
    )
    asyncio.run(server.serve())
