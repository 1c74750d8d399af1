"""The worker base: rounds while busy, rest when idle, wake, retry after failure, stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from payments_platform.messaging import TransientError
from payments_platform.workers import ROUND_FAILURES, Worker


class Scripted(Worker):
    """Plays back a script of round results (an int, or an exception to raise)."""

    name = "scripted worker"
    first_backoff_s = 0.001

    def __init__(self, script: list[int | Exception], *, idle_s: float = 0.001, loops: int = 1) -> None:
        super().__init__(idle_s=idle_s, loops=loops)
        self.script = list(script)
        self.rounds = 0
        self.seen_ready: list[bool] = []
        self.finished = asyncio.Event()

    async def run_once(self) -> int:
        self.rounds += 1
        self.seen_ready.append(self.ready)
        if not self.script:
            self.finished.set()
            return 0
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


async def run_until_finished(worker: Scripted, timeout: float = 2.0) -> asyncio.Event:
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.wait_for(worker.finished.wait(), timeout)
    stopping.set()
    await asyncio.wait_for(task, timeout)
    return stopping


async def test_rounds_run_back_to_back_while_busy_and_ready_is_set_while_running() -> None:
    worker = Scripted([5, 3, 1])
    assert worker.ready is False
    await run_until_finished(worker)
    assert worker.rounds == 4
    assert worker.seen_ready == [True] * 4
    assert worker.ready is False


async def test_an_idle_worker_rests_until_woken() -> None:
    worker = Scripted([0], idle_s=60.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.sleep(0.01)
    assert worker.rounds == 1  # resting: the idle interval is a minute
    worker.wake()
    await asyncio.wait_for(worker.finished.wait(), 1.0)
    assert worker.rounds == 2
    stopping.set()
    await asyncio.wait_for(task, 1.0)


async def test_stopping_ends_a_rest_at_once() -> None:
    worker = Scripted([0], idle_s=60.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(task, 0.5)
    assert worker.rounds == 1


async def test_a_failed_round_is_logged_once_counted_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    before = ROUND_FAILURES.labels("scripted worker")._value.get()
    worker = Scripted([RuntimeError("bug"), TransientError("provider down"), 2])
    with caplog.at_level(logging.WARNING, logger="payments_platform.workers"):
        await run_until_finished(worker)
    assert worker.rounds == 4
    failures = [r for r in caplog.records if r.name == "payments_platform.workers"]
    assert [(r.levelno, r.getMessage()) for r in failures] == [
        (logging.ERROR, "scripted worker failed; retrying"),
        (logging.WARNING, "scripted worker interrupted; retrying"),
    ]
    assert failures[0].exc_info is not None  # a bug is logged with its traceback
    assert ROUND_FAILURES.labels("scripted worker")._value.get() == before + 2


async def test_backoff_grows_with_consecutive_failures() -> None:
    class Failing(Scripted):
        first_backoff_s = 0.02

    worker = Failing([RuntimeError("a"), RuntimeError("b"), RuntimeError("c")])
    started = asyncio.get_running_loop().time()
    await run_until_finished(worker)
    # 0.02 + 0.04 + 0.08 s of backoff before the fourth round
    assert asyncio.get_running_loop().time() - started >= 0.14


async def test_busy_can_be_overridden_to_rest_after_a_partial_round() -> None:
    class FullRoundsOnly(Scripted):
        def busy(self, done: int) -> bool:
            return done >= 10

    worker = FullRoundsOnly([10, 3, 10], idle_s=60.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.sleep(0.01)
    assert worker.rounds == 2  # the partial round (3) means nothing more is due: rest
    stopping.set()
    await asyncio.wait_for(task, 0.5)


async def test_several_loops_share_the_work() -> None:
    worker = Scripted([1] * 6, loops=3)
    await run_until_finished(worker)
    assert worker.rounds >= 7
