"""The unit of work on PostgreSQL: repositories on one transaction's connection, and an
outbox for what it publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from invoice_sync.domain.normalise import InvalidErpDocument
from invoice_sync.messages import Event
from invoice_sync.settings import SERVICE
from payments_contracts import utc_now
from payments_contracts.topics import TopicRegistry
from payments_platform.messaging import Delivery, Outbox, Position, Transaction, dead_letter

from .registrations import RegistrationQueue
from .repositories import InvoiceRepository, SnapshotRepository


class PostgresUnitOfWork:
    def __init__(self, conn: asyncpg.Connection, outbox: Outbox, *, writes_outbox: bool) -> None:
        self._conn = conn
        self.invoices = InvoiceRepository(conn)
        self.snapshots = SnapshotRepository(conn)
        self.registrations = RegistrationQueue(conn)
        self._outbox = outbox
        self._writes_outbox = writes_outbox  # else the consumer writes it with its offsets
        self._invoices_topic = outbox.registry.invoices.name
        self.event_limit = outbox.registry.invoices.max_message_bytes
        self.now = utc_now()

    @classmethod
    def of(cls, tx: Transaction) -> PostgresUnitOfWork:
        """On a consumer's batch transaction."""
        return cls(tx.connection, tx.outbox, writes_outbox=False)

    def publish(self, event: Event) -> None:
        self._outbox.add(event.outgoing(self._invoices_topic))

    def reject(self, delivery: Delivery, error: InvalidErpDocument) -> None:
        """The dead letter carries the reason code and the source position in its headers."""
        self._outbox.add(
            dead_letter(
                Position(delivery.topic, delivery.partition, delivery.offset),
                delivery.message.key(),
                delivery.message.model_dump_json().encode(),
                service=SERVICE,
                error=f"{type(error).__name__}: {error}",
                reason=error.reason_code,
            )
        )

    async def commit(self) -> None:
        await self.invoices.flush()
        await self.registrations.flush()
        if self._writes_outbox:
            await self._outbox.write(self._conn)


class UnitsOfWork:
    """Opens a unit of work in its own transaction (workers, operator actions)."""

    def __init__(self, pool: asyncpg.Pool, registry: TopicRegistry) -> None:
        self._pool = pool
        self._registry = registry

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[PostgresUnitOfWork]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresUnitOfWork(conn, Outbox(self._registry), writes_outbox=True)
