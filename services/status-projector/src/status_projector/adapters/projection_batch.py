"""A projection batch on one version of the read model: the affected invoices and payments
are read in bulk at the start, changed in memory by the handlers, and written back in
bulk (a few round trips per batch, not per event) in the batch's transaction."""

from __future__ import annotations

import typing
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from pydantic import Field, TypeAdapter

from payments_contracts import Envelope, InvoiceEvent, PaymentEvent
from payments_platform.messaging import Transaction
from payments_platform.messaging.fast_decoding import encode, union_decoder
from status_projector.domain.model import (
    AccountPolicy,
    Invoice,
    Park,
    ParkedEvent,
    Payment,
    invoice_key,
    payment_key,
)
from status_projector.projection_batch import InvoiceKey, Position

from .repositories import ReadModelStore
from .schema import VersionTables

# Parked events come back from the database as JSON of either topic's messages, decoded
# as the live projection decodes them (msgspec Structs of the contracts' shapes).
_EVENT_TYPES = tuple(
    t for union in (InvoiceEvent, PaymentEvent) for t in typing.get_args(typing.get_args(union)[0])
)
_ANY_EVENT = union_decoder(
    list(_EVENT_TYPES),
    TypeAdapter(Annotated[typing.Union[_EVENT_TYPES], Field(discriminator="type")]),  # type: ignore[arg-type]  # noqa: UP007
)
# Parked messages kept decoded, at most: an event another instance unparks (its invoice
# arrives on a partition this one does not own) never comes back for its entry here.
DECODED_KEPT = 5_000


class PostgresProjectionBatch:
    def __init__(
        self, tx: Transaction, tables: VersionTables, decoded: dict[object, Envelope] | None = None
    ) -> None:
        self._store = ReadModelStore(tx.connection, tables)
        # Parked events this process decoded before (event id -> message), so a retry
        # need not decode the stored JSON again; the parked table stays the truth.
        self._decoded: dict[object, Envelope] = {} if decoded is None else decoded
        self._invoices: dict[InvoiceKey, Invoice | None] = {}
        self._payments: dict[str, Payment | None] = {}
        self._dirty_invoices: dict[InvoiceKey, Invoice] = {}
        self._dirty_payments: dict[str, Payment] = {}
        self._appeared: set[str] = set()
        self._parked: dict[object, ParkedEvent] = {}
        self._unparked: set[object] = set()
        self._last_event_at: datetime | None = None
        self._account_policies: dict[str, AccountPolicy] = {}

    @classmethod
    async def begin(
        cls, tx: Transaction, tables: VersionTables, decoded: dict[object, Envelope], *, bulk: bool
    ) -> PostgresProjectionBatch:
        """On a consumer's batch transaction, holding the version's batch lock."""
        batch = cls(tx, tables, decoded)
        await batch._store.lock(bulk=bulk)
        return batch

    async def load(self, invoice_keys: Iterable[InvoiceKey], payment_ids: Iterable[str]) -> None:
        wanted_payments = {p for p in payment_ids if p not in self._payments}
        keys = set(invoice_keys)
        for loaded in await self._store.payments(wanted_payments):
            self._payments[loaded.payment_id] = loaded
            keys.update((loaded.account_id, number) for number in loaded.allocations)
        for payment_id in wanted_payments:
            self._payments.setdefault(payment_id, None)
        wanted_invoices = {k for k in keys if k not in self._invoices}
        for invoice in await self._store.invoices(wanted_invoices):
            self._invoices[invoice.key] = invoice
        for key in wanted_invoices:
            self._invoices.setdefault(key, None)

    def invoice(self, account_id: str, invoice_number: str) -> Invoice | None:
        return self._invoices[(account_id, invoice_number)]

    def require_invoice(self, account_id: str, invoice_number: str) -> Invoice:
        invoice = self._invoices.get((account_id, invoice_number))
        if invoice is None:
            raise Park(
                f"unknown invoice {invoice_number} of account {account_id}",
                invoice_key(account_id, invoice_number),
            )
        return invoice

    def add_invoice(self, invoice: Invoice) -> None:
        self._invoices[invoice.key] = invoice
        self._appeared.add(invoice_key(*invoice.key))
        self.changed(invoice)

    def changed(self, invoice: Invoice) -> None:
        self._dirty_invoices[invoice.key] = invoice

    def changed_invoices(self) -> list[Invoice]:
        return list(self._dirty_invoices.values())

    def payment(self, payment_id: str) -> Payment | None:
        return self._payments[payment_id]

    def add_payment(self, payment: Payment) -> None:
        self._payments[payment.payment_id] = payment
        self._appeared.add(payment_key(payment.payment_id))
        self.payment_changed(payment)

    def payment_changed(self, payment: Payment) -> None:
        self._dirty_payments[payment.payment_id] = payment

    def account_policy(self, policy: AccountPolicy) -> None:
        if policy.replaces(self._account_policies.get(policy.account_id)):
            self._account_policies[policy.account_id] = policy

    def saw(self, at: datetime) -> None:
        if self._last_event_at is None or at > self._last_event_at:
            self._last_event_at = at

    def park(self, message: Envelope, position: Position, why: Park) -> None:
        topic, partition, offset = position
        if len(self._decoded) >= DECODED_KEPT:
            self._decoded.clear()  # the parked table stays the truth; these decode again
        self._decoded[message.event_id] = message
        self._parked[message.event_id] = ParkedEvent(
            event_id=message.event_id,
            waits_for=why.waits_for,
            reason=why.reason,
            type=message.type,
            account_id=message.account_id,
            topic=topic,
            partition=partition,
            offset=offset,
            occurred_at=message.occurred_at,
            envelope=encode(message),
        )

    def appeared(self) -> set[str]:
        keys, self._appeared = self._appeared, set()
        return keys

    async def parked_for(self, keys: set[str]) -> list[ParkedEvent]:
        candidates = {e.event_id: e for e in self._parked.values() if e.waits_for in keys}
        for e in await self._store.parked_waiting_for(keys):
            if e.event_id not in self._unparked:
                candidates.setdefault(e.event_id, e)
        return sorted(candidates.values(), key=lambda e: e.position)

    def parked_message(self, event: ParkedEvent) -> Envelope:
        return self._decoded.pop(event.event_id, None) or _ANY_EVENT(event.envelope.encode())

    def unpark(self, event: ParkedEvent) -> None:
        self._parked.pop(event.event_id, None)
        self._unparked.add(event.event_id)

    async def commit(self) -> None:
        await self._store.save_invoices(self._dirty_invoices.values())
        await self._store.save_payments(self._dirty_payments.values())
        await self._store.save_account_policies(self._account_policies.values())
        await self._store.unpark([e for e in self._unparked if e not in self._parked])
        await self._store.park(list(self._parked.values()))
        if self._last_event_at is not None:
            await self._store.note_progress(self._last_event_at)
