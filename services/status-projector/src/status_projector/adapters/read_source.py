"""Where the read API reads from, and how long it may take.

A streaming replica answers when one is configured (`PAYMENTS_READ_DATABASE_URL`);
when it cannot (down, frozen, not accepting connections) or has not yet replayed what
the caller asked for, the primary answers. Neither may hold a request longer than the
deadline: a database that refuses connections fails fast, but one that stops answering
(SIGSTOP, a network partition) would hold a request, and /health/ready with it, for as
long as TCP keeps the connection, so the work runs in its own task and the request stops
waiting for it at the deadline. The task is left to end by itself when the server comes
back (a cancelled asyncpg call waits for the server to confirm the cancel).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from payments_platform.messaging import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]


class ReadModelUnavailable(Exception):
    """No database could answer in time; the API answers 503 with Retry-After."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class ReadModelBehind(ReadModelUnavailable):
    """Every database answered, none has yet applied the offsets the caller passed."""


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`'s result, or TimeoutError after `seconds` without waiting for it to
    notice its cancellation (asyncio.wait_for would wait, for as long as the server is frozen)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise TimeoutError(f"no answer within {seconds:.2f}s")
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


@dataclass
class ReadSources:
    primary: asyncpg.Pool
    replica: asyncpg.Pool | None = None
    deadline_s: float = 1.5
    consistency_wait_s: float = 1.0
    retry_after_s: int = 2
    poll_s: float = 0.05

    async def read(self, work: Work[T], *, reached: Callable[[T], bool] | None = None) -> T:
        """`work` on the replica, else the primary. `reached` says whether an answer
        reflects what the caller waits for; one that does not is asked again for up to
        `consistency_wait_s`, on the replica and then the primary."""
        failures: list[str] = []
        started = time.monotonic()
        behind: T | None = None
        waiting_until = started + self.consistency_wait_s
        for pool, name in self._sources():
            while True:
                # The replica gets a third of the deadline, so a frozen replica leaves the
                # primary the rest: both frozen still answer 503 within the deadline.
                spent = time.monotonic() - started
                budget = (
                    self.deadline_s / 3
                    if pool is self.replica
                    else max(self.deadline_s - spent, self.deadline_s / 3)
                )
                try:
                    answer = await within(self._on(pool, work), budget)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    failures.append(f"{name}: {type(exc).__name__}")
                    log.warning(
                        "read model database did not answer", extra={"source": name, "error": repr(exc)}
                    )
                    break
                if reached is None or reached(answer):
                    return answer
                behind = answer
                if time.monotonic() >= waiting_until:
                    break
                await asyncio.sleep(self.poll_s)
        if behind is not None:
            raise ReadModelBehind(
                "the read model has not applied the offsets passed in min_offset yet; retry",
                retry_after_s=1,
            )
        raise ReadModelUnavailable(
            "the read model's database is not answering (" + ", ".join(failures) + "); retry",
            retry_after_s=self.retry_after_s,
        )

    def _sources(self) -> list[tuple[asyncpg.Pool, str]]:
        if self.replica is None:
            return [(self.primary, "primary")]
        return [(self.replica, "replica"), (self.primary, "primary")]

    @staticmethod
    async def _on(pool: asyncpg.Pool, work: Work[T]) -> T:
        async with pool.acquire() as conn:
            return await work(conn)
