"""Which failures are worth retrying: the database, the broker or the provider being away.

Transient failures are retried with backoff and never dead-lettered; anything else
about a message is permanent and sends that message (only) to its dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATE classes: connection exception, transaction rollback (serialization,
# deadlock), insufficient resources, operator intervention (restart, shutdown).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
_TRANSIENT_SQLSTATES = ("55P03",)  # lock not available


class TransientError(Exception):
    """Raised by handlers and adapters for a failure that will pass (provider down, ...)."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | asyncpg.InterfaceError | OSError | asyncio.TimeoutError):
        return True
    # asyncpg's own state errors: a server that ends its sessions mid-operation (`pg_ctl
    # stop -m fast`) leaves the connection "in another operation", and a multi-host DSN
    # matches no host while a standby is being promoted. Neither says anything about the
    # message; both pass once the pool reconnects.
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError):
        return True
    # Leadership moving, the in-sync replicas below min.insync.replicas, a request that
    # timed out: what a cluster losing one broker answers for a few seconds. Authorization
    # errors are not retriable: a missing grant must show, not spin.
    if isinstance(exc, KafkaError) and exc.retriable:
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES
    return False


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "transient failure, retrying",
            extra={"operation": what, "attempt": state.attempt_number, "error": repr(exc)},
        )

    return before_sleep


def retrying(what: str, *, until: asyncio.Event | None = None, max_wait_s: float = 10.0) -> AsyncRetrying:
    """Retry transient failures forever with jittered backoff, or until `until` is set."""

    def stop(state: RetryCallState) -> bool:
        return until is not None and until.is_set()

    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.05, max=max_wait_s),
        stop=stop if until is not None else stop_never,
        before_sleep=_log_retry(what),
        reraise=True,
    )


async def tried_a_few_times(
    call: Callable[[], Awaitable[T]], *, attempts: int, on: type[Exception] = TransientError
) -> T:
    """`call`, tried up to `attempts` times in all while it raises `on` (a blip: a reset
    connection, one 503); later retries back off 50 ms doubling with jitter, at most 0.5 s.
    The last error is raised for the caller's own, slower schedule.

    The first try is made outside tenacity: its loop costs about 30 µs of CPU per call,
    and payment-intake makes one call per payment for the rare retry.
    """
    try:
        return await call()
    except on:
        if attempts <= 1:
            raise
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(on),
        stop=stop_after_attempt(attempts - 1),
        wait=wait_exponential_jitter(multiplier=0.05, max=0.5),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover - reraise ends the loop
