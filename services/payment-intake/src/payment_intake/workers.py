"""payment-intake's background workers: the checkout opener, the expiry timer and the
provider worker (status sync, cancel at the provider, refunds).

Provider calls never run inside a transaction
(docs/decisions/0004-provider-calls-outside-consume-transaction.md): a round claims due work with a lease (a
crashed process's claims come back when it runs out), calls the provider, then records
every answer of the round through a handler in one unit of work, with the events it
publishes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

from opentelemetry.trace import Span

from payment_intake.domain.payment import Payment
from payment_intake.domain.provider import (
    ClaimedCheckout,
    OpenedCheckout,
    ProviderPort,
    RefundState,
    next_status_sync,
)
from payment_intake.domain.refunds import Refund
from payment_intake.handlers.checkouts import expire_due, record_checkouts
from payment_intake.handlers.provider_answers import (
    Answer,
    Heard,
    record_cancel,
    record_refund,
    record_sync,
)
from payment_intake.unit_of_work import IntakeConfig, UnitsOfWork
from payments_platform import tracing
from payments_platform.workers import Worker

T = TypeVar("T")
Item = TypeVar("Item")


class ProviderCalls:
    """At most `concurrency` provider calls at a time; a refusal or an outage is an
    answer to record, not a failed round."""

    def __init__(self, concurrency: int) -> None:
        self._gate = asyncio.Semaphore(concurrency)

    async def ask(self, items: Sequence[Item], call: Callable[[Item], Awaitable[T]]) -> list[Answer[T]]:
        async def one(item: Item) -> Answer[T]:
            async with self._gate:
                try:
                    return await call(item)
                except Exception as exc:
                    return exc

        return list(await asyncio.gather(*(one(i) for i in items)))


class CheckoutOpener(Worker):
    name = "checkout opener"

    def __init__(
        self,
        units: UnitsOfWork,
        provider: ProviderPort,
        *,
        lease_s: float = 15.0,
        concurrency: int = 16,
        batch_size: int = 200,
        idle_s: float = 0.5,
        gather_s: float = 0.0,
    ) -> None:
        super().__init__(idle_s=idle_s)
        self._units = units
        self._provider = provider
        self._calls = ProviderCalls(concurrency)
        self._lease_s = lease_s
        self._batch_size = batch_size
        self._gather_s = gather_s
        self._last_round = -math.inf

    async def run_once(self) -> int:
        # Rounds start at most every `gather_s` unless the last one was full: payments
        # trickling in at a steady rate share a round (two transactions) instead of each
        # costing its own, on the event loop the pay commands are answered on.
        wait = self._last_round + self._gather_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_round = time.monotonic()
        async with self._units() as uow:
            claimed = await uow.checkouts.claim_to_open(batch_size=self._batch_size, lease_s=self._lease_s)
        if len(claimed) >= self._batch_size:
            self._last_round = -math.inf
        if not claimed:
            return 0
        if tracing.ENABLED:
            return await self._open_traced(claimed)
        answers = await self._calls.ask(claimed, self._provider.open_checkout)
        async with self._units() as uow:
            await record_checkouts(uow, list(zip(claimed, answers, strict=True)))
        return len(claimed)

    async def _open_traced(self, claimed: list[Payment]) -> int:
        """Each opening goes on in its payment's trace (the pay command's decision), and
        what it records and publishes goes on from the opening's span."""
        async with self._units() as uow:
            traces = await uow.payments.traces_of([p.payment_id for p in claimed])
        spans: dict[UUID, Span] = {}

        async def open_one(payment: Payment) -> OpenedCheckout:
            with tracing.resumed(
                traces.get(payment.payment_id),
                "open checkout",
                attributes={
                    "payments.payment_id": str(payment.payment_id),
                    "payments.account_id": payment.account_id,
                },
            ) as span:
                spans[payment.payment_id] = spans[payment.command_event_id] = span
                return await self._provider.open_checkout(payment)

        answers = await self._calls.ask(claimed, open_one)
        with tracing.causing(spans):
            async with self._units() as uow:
                await record_checkouts(uow, list(zip(claimed, answers, strict=True)))
        return len(claimed)


class ExpiryTimer(Worker):
    """Ends payments whose checkout was not completed within the configured time."""

    name = "expiry timer"

    def __init__(self, units: UnitsOfWork, *, interval_s: float = 1.0, batch_size: int = 500) -> None:
        super().__init__(idle_s=interval_s)
        self._units = units
        self._batch_size = batch_size

    def busy(self, done: int) -> bool:
        return done >= self._batch_size  # a full round: more may be due

    async def run_once(self) -> int:
        async with self._units() as uow:
            return await expire_due(uow, batch_size=self._batch_size)


class ProviderWorker(Worker):
    """Status sync of payments the provider has not told us about in time, cancels at
    the provider, and refunds (submitted, then asked about if their webhook is overdue)."""

    name = "provider worker"

    def __init__(
        self,
        units: UnitsOfWork,
        provider: ProviderPort,
        config: IntakeConfig,
        *,
        lease_s: float = 15.0,
        interval_s: float = 1.0,
        concurrency: int = 16,
        batch_size: int = 100,
        refund_query_after_s: float = 60.0,
    ) -> None:
        super().__init__(idle_s=interval_s)
        self._units = units
        self._provider = provider
        self._config = config
        self._calls = ProviderCalls(concurrency)
        self._lease_s = lease_s
        self._batch_size = batch_size
        self._refund_query_after_s = refund_query_after_s

    async def run_once(self) -> int:
        return len(await self.sync()) + await self.cancel() + await self.refund()

    def _threshold_s(self, account_id: str) -> int:
        return self._config.policies.for_account(account_id).status_sync_after_s

    def next_sync_at(
        self, account_id: str, updated_at: datetime, asked_again_at: datetime | None
    ) -> datetime:
        """When this worker asks the provider about an open checkout of `account_id`'s
        (payment-intake-ops stuck shows it): its policy's threshold, its retry time."""
        return next_status_sync(updated_at, self._threshold_s(account_id), asked_again_at)

    async def sync(self, payment_ids: Sequence[UUID] | None = None) -> list[Heard]:
        """One round of status sync: due payments, or exactly `payment_ids` now (ops)."""
        least = min(p.status_sync_after_s for p in self._config.policies.all())
        async with self._units() as uow:
            claimed = await uow.checkouts.claim_to_sync(
                batch_size=self._batch_size,
                older_than_s=least,
                lease_s=self._lease_s,
                payment_ids=payment_ids,
            )
            due = [c for c in claimed if payment_ids is not None or self._past_threshold(c)]
            if len(due) < len(claimed):
                await uow.checkouts.sync_at(
                    [(c.payment_id, self._threshold_s(c.account_id)) for c in claimed if c not in due]
                )
        if not due:
            return []
        answers = await self._calls.ask(due, self._provider.checkout_state)
        async with self._units() as uow:
            return [
                await record_sync(uow, c, answer, threshold_s=self._threshold_s(c.account_id))
                for c, answer in zip(due, answers, strict=True)
            ]

    def _past_threshold(self, c: ClaimedCheckout) -> bool:
        # The claim has just checked (and replaced, with its lease) the retry time.
        return self.next_sync_at(c.account_id, c.updated_at, None) <= datetime.now(UTC)

    async def cancel(self) -> int:
        async with self._units() as uow:
            claimed = await uow.checkouts.claim_to_cancel(batch_size=self._batch_size, lease_s=self._lease_s)
        if not claimed:
            return 0
        answers = await self._calls.ask(claimed, self._provider.cancel_checkout)
        async with self._units() as uow:
            for c, answer in zip(claimed, answers, strict=True):
                await record_cancel(uow, c, answer, threshold_s=self._threshold_s(c.account_id))
        return len(claimed)

    async def refund(self) -> int:
        async with self._units() as uow:
            claimed = await uow.refunds.claim(batch_size=self._batch_size, lease_s=self._lease_s)
        if not claimed:
            return 0
        answers = await self._calls.ask(claimed, self._refund_call)
        async with self._units() as uow:
            for refund, answer in zip(claimed, answers, strict=True):
                await record_refund(uow, refund, answer, query_after_s=self._refund_query_after_s)
        return len(claimed)

    async def _refund_call(self, refund: Refund) -> RefundState:
        if refund.status == "submitted":
            return await self._provider.refund_state(refund)
        return await self._provider.refund(refund)
