"""`sandbox-provider`: run the sandbox provider on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from payments_platform.observability import configure_logging
from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SERVICE, SandboxSettings


class _Server(uvicorn.Server):
    # Exit 0 on SIGTERM after a clean shutdown, instead of uvicorn re-raising the signal.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: SandboxSettings) -> None:
    app, sender = build_app(settings)
    # log_config=None: uvicorn keeps the JSON lines configured in main (its own config
    # would replace them); requests are logged by the app (entrypoints/http.py).
    server = _Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    try:
        await server.serve()
    finally:
        await sender.close()


def main() -> None:
    settings = SandboxSettings()
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(serve(settings))
