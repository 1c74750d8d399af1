"""An in-memory unit of work for status-projector's handler unit tests: the same
Protocol as adapters/unit_of_work.py, with dicts in place of one version's tables."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from payments_contracts import Envelope
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


class FakeProjectionBatch:
    """One read model kept across batches; each batch ends with `commit`."""

    def __init__(self) -> None:
        self.invoices: dict[InvoiceKey, Invoice] = {}
        self.payments: dict[str, Payment] = {}
        self.policies: dict[str, AccountPolicy] = {}
        self.parked: dict[object, ParkedEvent] = {}
        self.last_event_at: datetime | None = None
        self.commits = 0
        self._messages: dict[object, Envelope] = {}
        self._appeared: set[str] = set()
        self._dirty: dict[InvoiceKey, Invoice] = {}

    async def load(self, invoice_keys: Iterable[InvoiceKey], payment_ids: Iterable[str]) -> None:
        return None  # everything is in memory

    def invoice(self, account_id: str, invoice_number: str) -> Invoice | None:
        return self.invoices.get((account_id, invoice_number))

    def require_invoice(self, account_id: str, invoice_number: str) -> Invoice:
        invoice = self.invoice(account_id, invoice_number)
        if invoice is None:
            raise Park(f"unknown invoice {invoice_number}", invoice_key(account_id, invoice_number))
        return invoice

    def add_invoice(self, invoice: Invoice) -> None:
        self.invoices[invoice.key] = invoice
        self._appeared.add(invoice_key(*invoice.key))
        self.changed(invoice)

    def changed(self, invoice: Invoice) -> None:
        self._dirty[invoice.key] = invoice

    def changed_invoices(self) -> list[Invoice]:
        return list(self._dirty.values())

    def payment(self, payment_id: str) -> Payment | None:
        return self.payments.get(payment_id)

    def add_payment(self, payment: Payment) -> None:
        self.payments[payment.payment_id] = payment
        self._appeared.add(payment_key(payment.payment_id))

    def payment_changed(self, payment: Payment) -> None:
        self.payments[payment.payment_id] = payment

    def account_policy(self, policy: AccountPolicy) -> None:
        if policy.replaces(self.policies.get(policy.account_id)):
            self.policies[policy.account_id] = policy

    def saw(self, at: datetime) -> None:
        if self.last_event_at is None or at > self.last_event_at:
            self.last_event_at = at

    def park(self, message: Envelope, position: Position, why: Park) -> None:
        topic, partition, offset = position
        self._messages[message.event_id] = message
        self.parked[message.event_id] = ParkedEvent(
            message.event_id,
            why.waits_for,
            why.reason,
            message.type,
            message.account_id,
            topic,
            partition,
            offset,
            message.occurred_at,
            message.model_dump_json(),
        )

    def appeared(self) -> set[str]:
        keys, self._appeared = self._appeared, set()
        return keys

    async def parked_for(self, keys: set[str]) -> list[ParkedEvent]:
        return sorted((e for e in self.parked.values() if e.waits_for in keys), key=lambda e: e.position)

    def parked_message(self, event: ParkedEvent) -> Envelope:
        return self._messages[event.event_id]

    def unpark(self, event: ParkedEvent) -> None:
        self.parked.pop(event.event_id, None)

    async def commit(self) -> None:
        self._dirty.clear()
        self.commits += 1
