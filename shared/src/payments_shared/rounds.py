"""The loop every background worker runs: do a round, again at once while there is
work, otherwise rest until woken or the idle interval passes; a failed round is logged
and retried with backoff (it never ends the worker); stop when asked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from payments_shared.messaging import is_transient

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0


async def run_rounds(
    name: str,
    round_: Callable[[], Awaitable[int]],
    stopping: asyncio.Event,
    *,
    idle_s: float,
    wake: asyncio.Event | None = None,
    busy: Callable[[int], bool] = lambda done: done > 0,
) -> None:
    """Call `round_` (it returns how much it did) until `stopping` is set."""
    failures = 0
    while not stopping.is_set():
        try:
            done = await round_()
        except Exception as exc:
            failures += 1
            if is_transient(exc):
                log.warning(f"{name} interrupted; retrying", extra={"error": repr(exc)})
            else:
                log.exception(f"{name} failed; retrying")
            await rest(stopping, min(MAX_BACKOFF_S, 0.2 * 2 ** (failures - 1)))
            continue
        failures = 0
        if not busy(done):
            if wake is not None:
                wake.clear()
            await rest(stopping, idle_s, wake)


async def rest(stopping: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    """Sleep up to `seconds`, ending early when stopping (or woken)."""
    waits = [asyncio.ensure_future(stopping.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w
