"""The unit of work the ERP handlers get: repositories on the batch's transaction, and
what it publishes through the transaction's outbox."""

from __future__ import annotations

import logging

from invoice_sync.adapters.postgres import InvoiceRepository, RegistrationQueue, SnapshotRepository
from invoice_sync.domain.normalise import InvalidErpDocument
from invoice_sync.domain.registration import intent_for
from invoice_sync.events import SERVICE, Event
from payments_shared.contracts import Envelope, utc_now
from payments_shared.messaging import Delivery, Position, Transaction, dead_letter

log = logging.getLogger(__name__)


class UnitOfWork:
    def __init__(self, tx: Transaction) -> None:
        self.connection = tx.connection
        self.invoices = InvoiceRepository(tx.connection)
        self.snapshots = SnapshotRepository(tx.connection)
        self.registrations = RegistrationQueue(tx.connection)
        self._outbox = tx.outbox
        self._invoices_topic = tx.outbox.registry.invoices.name
        # One moment for the whole transaction: the events it publishes happened at once.
        self.now = utc_now()
        self.dead_letters = 0

    def publish(self, message: Envelope) -> None:
        self._outbox.publish(message)

    def emit(self, event: Event) -> None:
        """Publish a canonical event already serialised (see invoice_sync.events)."""
        self._outbox.add(event.outgoing(self._invoices_topic))

    def reject(self, delivery: Delivery, error: InvalidErpDocument) -> None:
        """Send a document that can never be applied to the dead-letter topic, with the
        reason code and its source position in the headers; the batch goes on."""
        self.dead_letters += 1
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
        """Write the changed invoices and bring their pending provider calls up to date."""
        changed = self.invoices.changed
        await self.invoices.flush()
        wanted = [(invoice, intent_for(invoice)) for invoice in changed]
        await self.registrations.schedule([(i, t) for i, t in wanted if t is not None])
        await self.registrations.drop([i.key for i, t in wanted if t is None])
