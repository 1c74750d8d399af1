"""The one base of every background worker (timers, provider calls, samplers).

A worker does rounds: a round returns how much it did; while there is work the next
round starts at once, otherwise the worker rests until woken or its idle interval
passes. A failed round is logged once and retried with backoff (a failure never ends
the worker); the worker stops when the host sets `stopping`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from payments_platform.messaging import is_transient

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0

ROUND_FAILURES = Counter(
    "worker_round_failures_total", "Background worker rounds that failed (and were retried)", ["worker"]
)


class Worker(ABC):
    """Subclasses supply `run_once`; the host calls `run(stopping)` and reads `ready`."""

    name = "worker"
    first_backoff_s = FIRST_BACKOFF_S

    def __init__(self, *, idle_s: float, loops: int = 1) -> None:
        self.idle_s = idle_s
        self.loops = loops  # rounds run side by side (each claims its own work)
        self.ready = False
        self._wake = asyncio.Event()

    @abstractmethod
    async def run_once(self) -> int:
        """Do one round; return how much was done (0: nothing due)."""

    def busy(self, done: int) -> bool:
        """Whether to start the next round at once instead of resting."""
        return done > 0

    def wake(self) -> None:
        """Cut the current rest short: new work has arrived."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await asyncio.gather(
                *(
                    run_rounds(
                        self.name,
                        self.run_once,
                        stopping,
                        idle_s=self.idle_s,
                        wake=self._wake,
                        busy=self.busy,
                        first_backoff_s=self.first_backoff_s,
                    )
                    for _ in range(self.loops)
                )
            )
        finally:
            self.ready = False


async def run_rounds(
    name: str,
    round_: Callable[[], Awaitable[int]],
    stopping: asyncio.Event,
    *,
    idle_s: float,
    wake: asyncio.Event | None = None,
    busy: Callable[[int], bool] = lambda done: done > 0,
    first_backoff_s: float = FIRST_BACKOFF_S,
) -> None:
    """Call `round_` (it returns how much it did) until `stopping` is set."""
    failures = 0
    while not stopping.is_set():
        try:
            done = await round_()
        except Exception as exc:
            failures += 1
            ROUND_FAILURES.labels(name).inc()
            if is_transient(exc):
                log.warning(f"{name} interrupted; retrying", extra={"error": repr(exc)})
            else:
                log.exception(f"{name} failed; retrying")
            await rest(stopping, min(MAX_BACKOFF_S, first_backoff_s * 2 ** (failures - 1)))
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
