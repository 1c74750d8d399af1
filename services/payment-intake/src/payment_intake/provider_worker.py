"""The provider worker: everything we must ask the provider to do or tell us, outside
any consume transaction (docs/decisions.md, "Provider calls never run inside the
consume transaction").

- **Status sync**: a payment in `checkout_open` or `processing` for longer than its
  policy's `status_sync_after_s` is looked up at the provider and moved to its true
  outcome through `provider_said`, exactly as its webhook would have (same moves, same
  events, same flags). A checkout the provider does not know ends `failed`
  (`unknown_at_provider`).
- **Cancel**: a checkout we cancelled or let expire is cancelled at the provider; if
  money already moved there, that is the provider's word "succeeded" on an ended
  payment: flagged and refunded.
- **Refunds**: requested refunds are submitted (idempotent by our refund id); a
  submitted refund whose webhook is overdue is asked about.

Each kind claims due rows with `FOR UPDATE SKIP LOCKED` and a lease (a crashed
process's claims come back when the lease runs out), calls the provider without a
transaction open, then records every answer of the round in one transaction with the
events it publishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from prometheus_client import Counter

from payment_intake.adapters.postgres import Payment
from payment_intake.adapters.provider import CheckoutState, ProviderClient, ProviderRefused, RefundState
from payment_intake.adapters.refunds import Refund, RefundRepository
from payment_intake.background import backoff_s
from payment_intake.domain.payment import Happening, PaymentStatus
from payment_intake.handlers import ProviderWord, provider_said
from payment_intake.refunding import settle_refund
from payment_intake.unit_of_work import IntakeConfig, UnitOfWork
from payments_shared.domain.money import Money
from payments_shared.messaging import Outbox, Transaction
from payments_shared.rounds import run_rounds
from payments_shared.topics import TopicRegistry

log = logging.getLogger(__name__)

SYNCED = Counter("payment_intake_status_sync_total", "Status-sync answers", ["outcome"])
CANCELS = Counter("payment_intake_provider_cancels_total", "Cancellations at the provider", ["outcome"])
REFUND_CALLS = Counter("payment_intake_refund_calls_total", "Refund submissions and queries", ["outcome"])

T = TypeVar("T")
Answer = T | ProviderRefused | Exception


@dataclass(frozen=True)
class Claimed:
    payment_id: UUID
    account_id: str
    checkout_id: str
    updated_at: datetime
    attempts: int


class ProviderWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: TopicRegistry,
        provider: ProviderClient,
        config: IntakeConfig,
        *,
        on_published: Callable[[], None],
        lease_s: float = 15.0,
        interval_s: float = 1.0,
        concurrency: int = 16,
        batch_size: int = 100,
        refund_query_after_s: float = 60.0,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._provider = provider
        self._config = config
        self._on_published = on_published
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._gate = asyncio.Semaphore(concurrency)
        self._batch_size = batch_size
        self._refund_query_after_s = refund_query_after_s
        self._wake = asyncio.Event()
        self.ready = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await run_rounds("provider worker", self.once, stopping, idle_s=self._interval_s, wake=self._wake)
        finally:
            self.ready = False

    async def once(self) -> int:
        return await self.sync() + await self.cancel() + await self.refund()

    # --- status sync --------------------------------------------------------------------

    async def sync(self, payment_ids: Sequence[UUID] | None = None) -> int:
        """One round of status sync: due payments, or exactly `payment_ids` now (ops)."""
        claimed = await self._claim_sync(payment_ids)
        due = [c for c in claimed if payment_ids is not None or self._past_threshold(c)]
        if len(due) < len(claimed):
            await self._not_yet([c for c in claimed if c not in due])
        if not due:
            return 0
        answers = await self._ask(due, lambda c: self._provider.checkout_state(c.checkout_id))
        async with self._unit_of_work() as uow:
            for claimed_one, answer in zip(due, answers, strict=True):
                await self._synced(uow, claimed_one, answer)
        return len(due)

    def _threshold_s(self, account_id: str) -> int:
        return self._config.policies.for_account(account_id).status_sync_after_s

    def _past_threshold(self, c: Claimed) -> bool:
        return c.updated_at + timedelta(seconds=self._threshold_s(c.account_id)) <= datetime.now(UTC)

    async def _claim_sync(self, payment_ids: Sequence[UUID] | None) -> list[Claimed]:
        # The least threshold of any policy selects candidates; each payment's own
        # policy decides (`_past_threshold`).
        least = min(p.status_sync_after_s for p in self._config.policies.all())
        rows = await self._pool.fetch(
            """
            WITH due AS (
                SELECT payment_id FROM payments
                 WHERE status IN ('checkout_open', 'processing') AND checkout_id IS NOT NULL
                   AND flag_reason IS NULL
                   AND CASE WHEN $4::uuid[] IS NULL
                            THEN updated_at <= now() - make_interval(secs => $2)
                                 AND COALESCE(sync_next_at, '-infinity') <= now()
                            ELSE payment_id = ANY ($4::uuid[]) END
                 ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            UPDATE payments p SET sync_next_at = now() + make_interval(secs => $3),
                   sync_attempts = p.sync_attempts + 1
              FROM due WHERE p.payment_id = due.payment_id
            RETURNING p.payment_id, p.account_id, p.checkout_id, p.updated_at, p.sync_attempts
            """,
            self._batch_size,
            float(least),
            self._lease_s,
            None if payment_ids is None else list(payment_ids),
        )
        return [
            Claimed(r["payment_id"], r["account_id"], r["checkout_id"], r["updated_at"], r["sync_attempts"])
            for r in rows
        ]

    async def _not_yet(self, claimed: list[Claimed]) -> None:
        await self._pool.executemany(
            "UPDATE payments SET sync_next_at = $2, sync_attempts = 0 WHERE payment_id = $1",
            [
                (c.payment_id, c.updated_at + timedelta(seconds=self._threshold_s(c.account_id)))
                for c in claimed
            ],
        )

    async def _synced(self, uow: UnitOfWork, claimed: Claimed, answer: Answer[CheckoutState]) -> None:
        payment = await uow.payments.get_for_update(claimed.payment_id)
        if payment is None or payment.status not in (PaymentStatus.CHECKOUT_OPEN, PaymentStatus.PROCESSING):
            return  # its webhook (or the customer, or the timer) got there first
        if isinstance(answer, ProviderRefused) and answer.code == "unknown_checkout":
            SYNCED.labels("unknown").inc()
            log.warning("status sync: the provider does not know the checkout", extra=_about(payment))
            word = ProviderWord(
                Happening.FAILED, reason="unknown_at_provider", end_code="unknown_at_provider"
            )
            await provider_said(uow, payment, word, cause=None, source="status-sync")
            return
        if isinstance(answer, Exception):
            SYNCED.labels("error").inc()
            log.warning(
                "status sync failed; retrying later", extra={**_about(payment), "error": repr(answer)}
            )
            await self._sync_later(uow, payment.payment_id, backoff_s(claimed.attempts))
            return
        words = _words(payment, answer)
        SYNCED.labels(answer.status).inc()
        log.info("status sync", extra={**_about(payment), "provider_status": answer.status})
        for word in words:
            current = await uow.payments.get_for_update(payment.payment_id)
            assert current is not None
            await provider_said(uow, current, word, cause=None, source="status-sync")
        if not words:  # still open at the provider: ask again a threshold later
            await self._sync_later(uow, payment.payment_id, self._threshold_s(payment.account_id))

    @staticmethod
    async def _sync_later(uow: UnitOfWork, payment_id: UUID, delay_s: float) -> None:
        await uow.connection.execute(
            "UPDATE payments SET sync_next_at = now() + make_interval(secs => $2) WHERE payment_id = $1",
            payment_id,
            float(delay_s),
        )

    # --- cancel at the provider ---------------------------------------------------------------

    async def cancel(self) -> int:
        rows = await self._pool.fetch(
            """
            WITH due AS (
                SELECT payment_id FROM payments
                 WHERE cancel_state = 'due' AND cancel_next_at <= now() AND checkout_id IS NOT NULL
                 ORDER BY cancel_next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            UPDATE payments p SET cancel_next_at = now() + make_interval(secs => $2),
                   cancel_attempts = p.cancel_attempts + 1
              FROM due WHERE p.payment_id = due.payment_id
            RETURNING p.payment_id, p.account_id, p.checkout_id, p.updated_at, p.cancel_attempts
            """,
            self._batch_size,
            self._lease_s,
        )
        claimed = [
            Claimed(r["payment_id"], r["account_id"], r["checkout_id"], r["updated_at"], r["cancel_attempts"])
            for r in rows
        ]
        if not claimed:
            return 0
        answers = await self._ask(claimed, lambda c: self._provider.cancel_checkout(c.checkout_id))
        async with self._unit_of_work() as uow:
            for c, answer in zip(claimed, answers, strict=True):
                await self._cancelled(uow, c, answer)
        return len(claimed)

    async def _cancelled(self, uow: UnitOfWork, claimed: Claimed, answer: Answer[CheckoutState]) -> None:
        done = "UPDATE payments SET cancel_state = $2, cancel_next_at = NULL WHERE payment_id = $1"
        if isinstance(answer, CheckoutState) or (
            isinstance(answer, ProviderRefused) and answer.code == "unknown_checkout"
        ):
            CANCELS.labels("cancelled").inc()
            await uow.connection.execute(done, claimed.payment_id, "done")
            return
        if isinstance(answer, ProviderRefused) and answer.code == "checkout_completed":
            state = CheckoutState.of(
                answer.detail.get("checkout") or {"checkout_id": claimed.checkout_id, "status": "processing"}
            )
            payment = await uow.payments.get_for_update(claimed.payment_id)
            if state.status != "succeeded" or payment is None:
                # Money is moving; ask again later, when it has landed (or not).
                await self._cancel_later(uow, claimed.payment_id, self._threshold_s(claimed.account_id))
                return
            CANCELS.labels("too_late").inc()
            log.warning("checkout completed before our cancel reached the provider", extra=_about(payment))
            await uow.connection.execute(done, claimed.payment_id, "too_late")
            await provider_said(uow, payment, _succeeded(payment, state), cause=None, source="cancel")
            return
        if isinstance(answer, ProviderRefused):
            CANCELS.labels("refused").inc()
            log.error(
                "the provider refused to cancel",
                extra={"payment_id": str(claimed.payment_id), "code": answer.code},
            )
            await uow.connection.execute(done, claimed.payment_id, "refused")
            return
        CANCELS.labels("error").inc()
        await self._cancel_later(uow, claimed.payment_id, backoff_s(claimed.attempts))

    @staticmethod
    async def _cancel_later(uow: UnitOfWork, payment_id: UUID, delay_s: float) -> None:
        await uow.connection.execute(
            "UPDATE payments SET cancel_next_at = now() + make_interval(secs => $2) WHERE payment_id = $1",
            payment_id,
            float(delay_s),
        )

    # --- refunds -------------------------------------------------------------------------------

    async def refund(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await RefundRepository(conn).claim(batch_size=self._batch_size, lease_s=self._lease_s)
        if not claimed:
            return 0
        answers = await self._ask(claimed, self._refund_call)
        async with self._unit_of_work() as uow:
            for refund, answer in zip(claimed, answers, strict=True):
                await self._refund_answered(uow, refund, answer)
        return len(claimed)

    async def _refund_call(self, refund: Refund) -> RefundState:
        if refund.status == "submitted":
            return await self._provider.refund_state(str(refund.refund_id))
        if refund.checkout_id is None:
            raise ProviderRefused("no_checkout", "the payment has no checkout at the provider")
        return await self._provider.refund(
            refund_id=str(refund.refund_id),
            checkout_id=refund.checkout_id,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            reason=refund.reason_code,
        )

    async def _refund_answered(self, uow: UnitOfWork, claimed: Refund, answer: Answer[RefundState]) -> None:
        refund = await uow.refunds.get_for_update(claimed.refund_id)
        if refund is None or refund.status not in ("requested", "submitted"):
            return  # its webhook settled it meanwhile (or an operator asked again under a new id)
        if isinstance(answer, RefundState):
            REFUND_CALLS.labels(answer.status).inc()
            if answer.status == "pending":
                await uow.refunds.submitted(
                    refund.refund_id,
                    answer.provider_refund_id or "",
                    query_after_s=self._refund_query_after_s,
                )
                if refund.status == "submitted":  # asked, still pending: ask again later
                    await uow.refunds.retry_later(
                        refund.refund_id, self._refund_query_after_s, "still pending"
                    )
                return
            await settle_refund(
                uow,
                refund,
                succeeded=answer.status == "succeeded",
                provider_refund_id=answer.provider_refund_id,
                reason=answer.reason,
                cause=None,
            )
            return
        if isinstance(answer, ProviderRefused):
            REFUND_CALLS.labels("refused").inc()
            log.error(
                "the provider refused a refund",
                extra={"refund_id": str(refund.refund_id), "code": answer.code},
            )
            await settle_refund(
                uow, refund, succeeded=False, provider_refund_id=None, reason=answer.code, cause=None
            )
            return
        REFUND_CALLS.labels("error").inc()
        await uow.refunds.retry_later(refund.refund_id, backoff_s(refund.attempts), repr(answer))

    # --- plumbing ------------------------------------------------------------------------------

    async def _ask(self, items: Sequence[Any], call: Callable[[Any], Awaitable[T]]) -> list[Answer[T]]:
        async def one(item: Any) -> Answer[T]:
            async with self._gate:
                try:
                    return await call(item)
                except Exception as exc:  # a refusal or an outage is an answer to record
                    return exc

        return list(await asyncio.gather(*(one(i) for i in items)))

    def _unit_of_work(self) -> RoundTransaction:
        return RoundTransaction(self)


class RoundTransaction:
    """One transaction for a round's answers, its events written to the outbox."""

    def __init__(self, worker: ProviderWorker) -> None:
        self._worker = worker

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._worker._pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        self._outbox = Outbox(self._worker._registry)
        return UnitOfWork(Transaction(self._conn, self._outbox), self._worker._config)

    async def __aexit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if exc is None:
                written = await self._outbox.write(self._conn)
                await self._tx.commit()
                if written:
                    self._worker._on_published()
            else:
                await self._tx.rollback()
        finally:
            await self._worker._pool.release(self._conn)


def _succeeded(payment: Payment, state: CheckoutState) -> ProviderWord:
    amount = None
    if state.amount_minor is not None:
        amount = Money(amount_minor=state.amount_minor, currency=state.currency or payment.currency)
    return ProviderWord(
        Happening.SUCCEEDED,
        checkout_id=state.checkout_id,
        amount=amount,
        provider_payment_ref=state.provider_payment_ref,
    )


def _words(payment: Payment, state: CheckoutState) -> list[ProviderWord]:
    """The webhooks the provider's state stands for, in the order it would have sent them."""
    status = state.status
    if status == "succeeded":
        words = [_succeeded(payment, state)]
        if payment.status is PaymentStatus.CHECKOUT_OPEN:
            words.insert(0, ProviderWord(Happening.PROCESSING, checkout_id=state.checkout_id))
        return words
    if status == "processing" and payment.status is PaymentStatus.CHECKOUT_OPEN:
        return [ProviderWord(Happening.PROCESSING, checkout_id=state.checkout_id)]
    ended = {"failed": Happening.FAILED, "expired": Happening.EXPIRED, "cancelled": Happening.CANCELLED}
    if status in ended:
        return [ProviderWord(ended[status], checkout_id=state.checkout_id, reason=state.reason)]
    return []


def _about(payment: Payment) -> dict[str, str]:
    return {
        "payment_id": str(payment.payment_id),
        "correlation_id": str(payment.correlation_id),
        "account_id": payment.account_id,
    }
