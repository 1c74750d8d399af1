"""`sandbox-provider`: run the sandbox provider on its own port."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SandboxSettings


async def serve(settings: SandboxSettings) -> None:
    app, sender = build_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    )
    try:
        await server.serve()
    finally:
        await sender.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format='{"level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}')
    asyncio.run(serve(SandboxSettings()))
