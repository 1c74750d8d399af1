"""What /health/live and /health/ready look at besides the service's own parts: the
event loop's heartbeat and the broker (docs/operations.md, section Health)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback
from typing import Any

from aiokafka.client import AIOKafkaClient
from prometheus_client import Counter, Gauge

from .kafka import client_options

log = logging.getLogger(__name__)

LOOP_LAG = Gauge("event_loop_lag_seconds", "How late the event loop's last heartbeat tick ran")
LOOP_STALLS = Counter("event_loop_stalls_total", "Times the event loop was blocked past the stall limit")


class LoopHeartbeat:
    """A task that ticks every `interval_s`; how late each tick runs is the loop's lag.

    A loop blocked by synchronous work (or one so flooded it cannot run a timer) stops
    ticking: liveness then fails, and a watchdog thread, which does not need the loop,
    logs the stack the loop is stuck in so the restart leaves a clue behind.
    """

    def __init__(self, *, interval_s: float = 0.5, stall_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.last_tick = time.monotonic()
        self.lag_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._watchdog: threading.Thread | None = None
        self._quit = threading.Event()
        self._loop_thread = threading.get_ident()

    def start(self) -> None:
        self.last_tick = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._tick())
        self._watchdog = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._watchdog.start()

    async def stop(self) -> None:
        self._quit.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def silence(self) -> float:
        """Seconds since the last tick beyond the expected interval."""
        return max(0.0, time.monotonic() - self.last_tick - self.interval_s)

    def alive(self) -> bool:
        return self.silence() < self.stall_s and self.lag_s < self.stall_s

    def figures(self) -> dict[str, float]:
        return {"loop_lag_s": round(self.lag_s, 3), "since_tick_s": round(self.silence(), 3)}

    async def _tick(self) -> None:
        while True:
            expected = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            self.lag_s = max(0.0, now - expected)
            self.last_tick = now
            LOOP_LAG.set(self.lag_s)

    def _watch(self) -> None:
        reported = False
        while not self._quit.wait(min(1.0, self.stall_s / 4)):
            stalled = self.silence() >= self.stall_s
            if stalled and not reported:
                LOOP_STALLS.inc()
                log.error(
                    "event loop blocked; liveness fails until it ticks again",
                    extra={"blocked_s": round(self.silence(), 1), "stack": self._loop_stack()},
                )
            reported = stalled

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        return "".join(traceback.format_stack(frame)[-12:]) if frame is not None else ""


class BrokerProbe:
    """Is the Kafka cluster answering? A metadata request, bounded by `timeout_s`, its
    answer kept for `ttl_s` so frequent probes from several sources stay cheap."""

    def __init__(self, bootstrap: str, *, ttl_s: float = 2.0, timeout_s: float = 1.5, **client: Any) -> None:
        self._bootstrap = bootstrap
        self._client_options = client
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._client: AIOKafkaClient | None = None
        self._checked_at = float("-inf")
        self._answer = False
        self._lock = asyncio.Lock()

    async def reachable(self) -> bool:
        async with self._lock:  # one request in flight, however many probes arrive
            if time.monotonic() - self._checked_at >= self._ttl_s:
                self._answer = await self._ask()
                self._checked_at = time.monotonic()
            return self._answer

    async def _ask(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._client is None:
                    client = AIOKafkaClient(
                        **client_options(self._bootstrap),
                        client_id="health-probe",
                        request_timeout_ms=int(self._timeout_s * 1000),
                        **self._client_options,
                    )
                    try:
                        await client.bootstrap()
                    except BaseException:
                        await client.close()
                        raise
                    self._client = client
                metadata = await self._client.fetch_all_metadata()
                return bool(metadata.brokers())
        except Exception as exc:
            log.debug("broker probe failed", extra={"error": repr(exc)})
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
