"""The unit of work on PostgreSQL: the repositories on one transaction, and publish()
into that transaction's outbox. The consumer opens the transaction for a batch; a
worker opens its own (`units`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg

from payment_intake.adapters.checkout_queues import PostgresCheckoutQueues
from payment_intake.adapters.payment_repository import PostgresPaymentRepository
from payment_intake.adapters.queued_work import QueuedWork
from payment_intake.adapters.refund_repository import PostgresRefundRepository
from payment_intake.adapters.repositories import (
    PostgresCommandRepository,
    PostgresInvoiceRepository,
    PostgresWebhookRepository,
)
from payment_intake.adapters.serialized import Serialized
from payment_intake.unit_of_work import IntakeConfig, UnitOfWork
from payments_contracts import Envelope
from payments_contracts.topics import TopicRegistry
from payments_platform.messaging import Outbox, Transaction
from payments_platform.messaging.outbox import OutgoingMessage


class PostgresUnitOfWork:
    def __init__(self, tx: Transaction, config: IntakeConfig, queued: QueuedWork | None = None) -> None:
        queued = queued if queued is not None else QueuedWork()
        self._outbox = tx.outbox
        self._serialized = Serialized()
        self.config = config
        self.invoices = PostgresInvoiceRepository(tx.connection)
        self.commands = PostgresCommandRepository(tx.connection, self._serialized)
        self.payments = PostgresPaymentRepository(tx.connection, queued, self._serialized)
        self.checkouts = PostgresCheckoutQueues(tx.connection, queued)
        self.refunds = PostgresRefundRepository(tx.connection, queued)
        self.webhooks = PostgresWebhookRepository(tx.connection)

    def publish(self, message: Envelope) -> None:
        topic = self._outbox.registry.for_message(message)
        self._outbox.add(OutgoingMessage.of(topic, message, value=self._serialized.of(message).encode()))


def unit_of_work_factory(
    config: IntakeConfig, queued: QueuedWork | None = None
) -> Callable[[Transaction], UnitOfWork]:
    """The consumer's: a unit of work on the transaction of each batch (noting in `queued`
    the work it leaves for the workers)."""

    def make(tx: Transaction) -> UnitOfWork:
        return PostgresUnitOfWork(tx, config, queued)

    return make


def units(
    pool: asyncpg.Pool, registry: TopicRegistry, config: IntakeConfig, *, on_published: Callable[[], None]
) -> Callable[[], AbstractAsyncContextManager[UnitOfWork]]:
    """A worker's: each `async with` is one transaction, its messages written to the
    outbox and committed with it (then `on_published` wakes the relay)."""

    @asynccontextmanager
    async def unit() -> AsyncIterator[UnitOfWork]:
        outbox = Outbox(registry)
        async with pool.acquire() as conn:
            async with conn.transaction():
                yield PostgresUnitOfWork(Transaction(conn, outbox), config)
                written = await outbox.write(conn)
            if written:
                on_published()

    return unit
