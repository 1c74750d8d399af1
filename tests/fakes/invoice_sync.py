"""An in-memory unit of work for invoice-sync's handler unit tests: the same Protocol
as adapters/unit_of_work.py, with dicts in place of tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from invoice_sync.domain.model import Invoice, InvoiceKey, Payable
from invoice_sync.domain.normalise import InvalidErpDocument
from invoice_sync.domain.registration import Intent, PendingRegistration, QueuedCall
from invoice_sync.messages import Event
from payments_contracts.topics import MAX_MESSAGE_BYTES
from payments_platform.messaging import Delivery


class FakeInvoices:
    def __init__(self, stored: dict[InvoiceKey, Invoice]) -> None:
        self.stored = stored
        self._changed: dict[InvoiceKey, Invoice] = {}
        self._answered: dict[InvoiceKey, Payable] = {}

    async def preload(self, keys: Iterable[InvoiceKey], accounts: Iterable[str] = ()) -> None:
        return None

    async def get(self, account_id: str, invoice_number: str) -> Invoice | None:
        return self._current((account_id, invoice_number))

    def _current(self, key: InvoiceKey) -> Invoice | None:
        invoice = self._changed.get(key) or self.stored.get(key)
        answered = self._answered.get(key)
        if invoice is not None and answered is not None:
            invoice = replace(invoice, provider=answered.provider)
        return invoice

    async def payables(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, Payable]:
        found = {key: self._current(key) for key in keys}
        return {key: invoice.payable for key, invoice in found.items() if invoice is not None}

    async def of_account(self, account_id: str) -> list[Invoice]:
        keys = {k for k in (*self.stored, *self._changed, *self._answered) if k[0] == account_id}
        found = [await self.get(*k) for k in sorted(keys)]
        return [i for i in found if i is not None]

    def put(self, invoice: Invoice) -> None:
        self._changed[invoice.key] = invoice

    def put_provider_states(self, invoices: Iterable[Payable]) -> None:
        for payable in invoices:
            self._answered[payable.key] = payable

    def commit(self) -> None:
        for key, invoice in self._changed.items():
            # As the repository does: an ERP change keeps what the provider holds.
            kept = self.stored.get(key)
            self.stored[key] = invoice if kept is None else replace(invoice, provider=kept.provider)
        for key, payable in self._answered.items():
            # As the repository's UPDATE: an invoice not stored is not written.
            if key in self.stored:
                self.stored[key] = replace(self.stored[key], provider=payable.provider)
        self._changed.clear()
        self._answered.clear()


class FakeSnapshots:
    def __init__(self) -> None:
        self.sequences: dict[str, int] = {}

    async def sequence(self, account_id: str) -> int | None:
        return self.sequences.get(account_id)

    async def record(self, account_id: str, sequence: int, as_of: datetime) -> None:
        self.sequences[account_id] = sequence


@dataclass
class Queued:
    intent: Intent
    revision: int
    attempts: int = 0
    last_error: str | None = None


class FakeRegistrations:
    def __init__(self) -> None:
        self.queued: dict[InvoiceKey, Queued] = {}
        self._wanted: dict[InvoiceKey, Intent | None] = {}
        self._revision = 0

    def schedule(self, invoice: Invoice | Payable, intent: Intent) -> None:
        self._wanted[invoice.key] = intent

    def drop(self, key: InvoiceKey) -> None:
        self._wanted[key] = None

    def update(self, calls: Mapping[InvoiceKey, QueuedCall]) -> None:
        for key, call in calls.items():
            self._wanted[key] = None if call is None else call[1]

    async def due_now(self, key: InvoiceKey) -> bool:
        queued = self.queued.get(key)
        if queued is not None:
            queued.attempts = 0
        return queued is not None

    async def claim(self, limit: int, lease_s: float) -> list[PendingRegistration]:
        claimed = []
        for (account, number), queued in sorted(self.queued.items())[:limit]:
            queued.attempts += 1
            claimed.append(
                PendingRegistration(
                    account, number, queued.intent, queued.revision, None, None, queued.attempts
                )
            )
        return claimed

    async def traces_of(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, str]:
        return {}

    async def revisions(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, int]:
        return {k: self.queued[k].revision for k in keys if k in self.queued}

    async def reschedule(self, items: Sequence[tuple[PendingRegistration, float]], error: str) -> None:
        for pending, _ in items:
            queued = self.queued.get(pending.key)
            if queued is not None and queued.revision == pending.revision:
                queued.last_error = error

    def commit(self) -> None:
        for key, intent in self._wanted.items():
            if intent is None:
                self.queued.pop(key, None)
            else:
                self._revision += 1
                self.queued[key] = Queued(intent, self._revision)
        self._wanted.clear()


@dataclass
class FakeUnitOfWork:
    stored: dict[InvoiceKey, Invoice] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 20, tzinfo=UTC))
    published: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[Delivery, str]] = field(default_factory=list)
    commits: int = 0
    event_limit: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        self.invoices = FakeInvoices(self.stored)
        self.snapshots = FakeSnapshots()
        self.registrations = FakeRegistrations()
        self._pending: list[dict[str, Any]] = []

    def publish(self, event: Event) -> None:
        self._pending.append(json.loads(event.body))

    def reject(self, delivery: Delivery, error: InvalidErpDocument) -> None:
        self.rejected.append((delivery, error.reason_code))

    async def commit(self) -> None:
        self.invoices.commit()
        self.registrations.commit()
        self.published += self._pending
        self._pending = []
        self.commits += 1

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.published if e["type"] == type_]
