"""Background parts: the checkout opener and the expiry timer.

Both work outside any consume transaction. The opener claims requested payments with
a lease (so a crashed process's claims come back), calls the provider without holding
a transaction, then records every result of the round in one transaction together
with the events it publishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import asyncpg

from payment_intake.adapters.postgres import Payment, PaymentRepository
from payment_intake.adapters.provider import OpenedCheckout, ProviderClient, ProviderRefused
from payment_intake.domain import payment as machine
from payment_intake.domain.payment import Happening, PaymentStatus
from payment_intake.outcomes import checkout_opened, transition_outcome
from payments_shared.messaging import Outbox
from payments_shared.rounds import run_rounds
from payments_shared.topics import TopicRegistry

log = logging.getLogger(__name__)

Result = OpenedCheckout | ProviderRefused | Exception


def backoff_s(attempt: int) -> float:
    """Provider outages: 1 s, 2 s, 4 s ... capped at 5 minutes, so others keep flowing."""
    return min(300.0, 2.0 ** max(0, attempt - 1))


class CheckoutOpener:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: TopicRegistry,
        provider: ProviderClient,
        *,
        on_published: Callable[[], None],
        lease_s: float = 15.0,
        concurrency: int = 16,
        batch_size: int = 200,
        idle_s: float = 0.5,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._provider = provider
        self._on_published = on_published
        self._lease_s = lease_s
        self._gate = asyncio.Semaphore(concurrency)
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._wake = asyncio.Event()
        self.ready = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await run_rounds("checkout opener", self.once, stopping, idle_s=self._idle_s, wake=self._wake)
        finally:
            self.ready = False

    async def once(self) -> int:
        """One round: claim due payments, open their checkouts, record the results."""
        claimed = await self._claim()
        if not claimed:
            return 0
        results = await asyncio.gather(*(self._open(p) for p in claimed))
        await self._record(list(zip(claimed, results, strict=True)))
        return len(claimed)

    async def _claim(self) -> list[Payment]:
        async with self._pool.acquire() as conn, conn.transaction():
            ids: list[UUID] = [
                r["payment_id"]
                for r in await conn.fetch(
                    """
                    UPDATE payments SET next_attempt_at = now() + make_interval(secs => $2),
                           open_attempts = open_attempts + 1
                     WHERE payment_id IN (
                        SELECT payment_id FROM payments
                         WHERE next_attempt_at <= now() AND status = 'requested'
                         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                    RETURNING payment_id
                    """,
                    self._batch_size,
                    self._lease_s,
                )
            ]
            return await PaymentRepository(conn).get_many_for_update(ids) if ids else []

    async def _open(self, payment: Payment) -> Result:
        async with self._gate:
            try:
                return await self._provider.open_checkout(payment)
            except ProviderRefused as refused:
                return refused
            except Exception as exc:
                return exc

    async def _record(self, results: list[tuple[Payment, Result]]) -> None:
        outbox = Outbox(self._registry)
        async with self._pool.acquire() as conn, conn.transaction():
            repo = PaymentRepository(conn)
            current = {
                p.payment_id: p for p in await repo.get_many_for_update([c.payment_id for c, _ in results])
            }
            for claimed, result in results:
                payment = current.get(claimed.payment_id)
                if payment is None:
                    continue
                if isinstance(result, OpenedCheckout):
                    await self._opened(repo, outbox, payment, result)
                elif isinstance(result, ProviderRefused):
                    await self._refused(repo, outbox, payment, result)
                else:
                    await self._retry_later(conn, payment, result)
            await outbox.write(conn)
        self._on_published()

    async def _opened(
        self, repo: PaymentRepository, outbox: Outbox, payment: Payment, checkout: OpenedCheckout
    ) -> None:
        decision = machine.apply(payment.status, Happening.CHECKOUT_OPENED)
        if decision.to is None:
            # A callback, the customer or the timer got there first; keep the checkout id.
            await repo.conn.execute(
                "UPDATE payments SET checkout_id = COALESCE(checkout_id, $2) WHERE payment_id = $1",
                payment.payment_id,
                checkout.checkout_id,
            )
            return
        await repo.move(
            payment.payment_id, decision.to, checkout_id=checkout.checkout_id, checkout_url=checkout.url
        )
        expires_at = min(checkout.expires_at, payment.expires_at)
        log.info("checkout opened", extra={**_about(payment), "checkout_id": checkout.checkout_id})
        outbox.publish(
            checkout_opened(
                payment, checkout_id=checkout.checkout_id, url=checkout.url, expires_at=expires_at
            )
        )

    async def _refused(
        self, repo: PaymentRepository, outbox: Outbox, payment: Payment, refused: ProviderRefused
    ) -> None:
        decision = machine.apply(payment.status, Happening.FAILED)
        if decision.to is None:
            return
        log.warning(
            "provider refused the checkout",
            extra={**_about(payment), "code": refused.code},
        )
        await repo.move(payment.payment_id, decision.to, reason=f"checkout_refused:{refused.code}")
        outbox.publish(
            transition_outcome(
                payment,
                decision.to,
                cause=payment.command_event_id,
                reason_code="checkout_refused",
                detail=refused.message,
            )
        )

    async def _retry_later(self, conn: asyncpg.Connection, payment: Payment, error: Exception) -> None:
        delay = backoff_s(payment.open_attempts)
        log.warning(
            "checkout not opened; retrying later",
            extra={**_about(payment), "retry_in_s": delay, "error": repr(error)},
        )
        await conn.execute(
            "UPDATE payments SET next_attempt_at = now() + $2::interval"
            " WHERE payment_id = $1 AND status = 'requested'",
            payment.payment_id,
            timedelta(seconds=delay),
        )


def _about(payment: Payment) -> dict[str, str]:
    """Log fields tying a line to the pay command that started it."""
    return {
        "payment_id": str(payment.payment_id),
        "correlation_id": str(payment.correlation_id),
        "account_id": payment.account_id,
    }


class ExpiryTimer:
    """Ends payments whose checkout was not completed within the configured time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: TopicRegistry,
        *,
        on_published: Callable[[], None],
        interval_s: float = 1.0,
        batch_size: int = 500,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._on_published = on_published
        self._interval_s = interval_s
        self._batch_size = batch_size
        self.ready = False

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await run_rounds(
                "expiry timer",
                self.once,
                stopping,
                idle_s=self._interval_s,
                busy=lambda expired: expired >= self._batch_size,  # a full round: more may be due
            )
        finally:
            self.ready = False

    async def once(self) -> int:
        outbox = Outbox(self._registry)
        async with self._pool.acquire() as conn, conn.transaction():
            ids = [
                r["payment_id"]
                for r in await conn.fetch(
                    """
                    SELECT payment_id FROM payments
                     WHERE status IN ('requested', 'checkout_open') AND expires_at <= now()
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
                    """,
                    self._batch_size,
                )
            ]
            repo = PaymentRepository(conn)
            for payment_id in ids:
                payment = await repo.get_for_update(payment_id)
                if payment is None:
                    continue
                decision = machine.apply(payment.status, Happening.EXPIRED)
                if decision.to is not PaymentStatus.EXPIRED:
                    continue
                await repo.move(payment_id, PaymentStatus.EXPIRED, reason="checkout_expired")
                await repo.cancel_at_provider(payment_id)
                outbox.publish(
                    transition_outcome(
                        payment, PaymentStatus.EXPIRED, cause=None, reason_code="checkout_expired"
                    )
                )
            written = await outbox.write(conn)
        if written:
            self._on_published()
        return len(ids)
