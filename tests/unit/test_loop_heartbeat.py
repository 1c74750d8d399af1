"""Liveness catches a wedged event loop: the heartbeat stops ticking, the watchdog
thread (which does not need the loop) reports it, and it recovers once the loop runs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from payments_platform.health import LoopHeartbeat


async def test_a_blocked_loop_is_not_alive_and_the_watchdog_logs_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heartbeat = LoopHeartbeat(interval_s=0.05, stall_s=0.4)
    heartbeat.start()
    try:
        await asyncio.sleep(0.2)
        assert heartbeat.alive()

        with caplog.at_level(logging.ERROR, logger="payments_platform.health"):
            time.sleep(1.0)  # synchronous work on the loop: nothing else runs meanwhile
            assert not heartbeat.alive()
            assert heartbeat.figures()["since_tick_s"] >= 0.4
        blocked = [r for r in caplog.records if r.getMessage().startswith("event loop blocked")]
        assert blocked, "the watchdog thread reports the stall while the loop is blocked"
        assert "time.sleep(1.0)" in blocked[0].stack  # type: ignore[attr-defined]

        await asyncio.sleep(0.15)  # a tick that ran late still reports the lag it saw...
        await asyncio.sleep(0.15)  # ...and the next on-time ticks clear it
        assert heartbeat.alive()
    finally:
        await heartbeat.stop()


async def test_a_busy_but_running_loop_stays_alive() -> None:
    heartbeat = LoopHeartbeat(interval_s=0.05, stall_s=0.4)
    heartbeat.start()
    try:
        for _ in range(10):
            time.sleep(0.02)  # short synchronous slices, as a batch decode would take
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        assert heartbeat.alive()
    finally:
        await heartbeat.stop()
