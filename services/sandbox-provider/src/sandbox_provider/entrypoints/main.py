"""`sandbox-provider`: run the sandbox provider on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SandboxSettings


class _Server(uvicorn.Server):
    # Exit 0 on SIGTERM after a clean shutdown, instead of uvicorn re-raising the signal.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: SandboxSettings) -> None:
    app, sender = build_app(settings)
    server = _Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    try:
        await server.serve()
    finally:
        await sender.close()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format='{"level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}',
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(serve(SandboxSettings()))
