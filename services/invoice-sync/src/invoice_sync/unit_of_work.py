"""What handlers and workers work through: the repositories of one transaction and what
it publishes. adapters/unit_of_work.py implements it on PostgreSQL; the handler unit
tests use an in-memory fake (tests/fakes/invoice_sync.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from invoice_sync.domain.model import Invoice, InvoiceKey, Payable
from invoice_sync.domain.normalise import InvalidErpDocument
from invoice_sync.domain.registration import Intent, PendingRegistration, QueuedCall
from invoice_sync.messages import Event
from payments_platform.messaging import Delivery


class Invoices(Protocol):
    async def preload(self, keys: Iterable[InvoiceKey], accounts: Iterable[str] = ()) -> None:
        """Load (and lock, in key order) these invoices and every invoice of `accounts`."""

    async def get(self, account_id: str, invoice_number: str) -> Invoice | None: ...

    async def of_account(self, account_id: str) -> list[Invoice]: ...

    def put(self, invoice: Invoice) -> None:
        """Keep what an ERP document changed (the ERP side of the invoice)."""

    async def payables(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, Payable]:
        """What registration reads of these invoices (those stored), locked in key order."""

    def put_provider_states(self, invoices: Iterable[Payable]) -> None:
        """Keep what the provider now holds for each invoice (the worker's side)."""


class Snapshots(Protocol):
    async def sequence(self, account_id: str) -> int | None: ...

    async def record(self, account_id: str, sequence: int, as_of: datetime) -> None: ...


class Registrations(Protocol):
    """Provider calls still to make, one per invoice: the newest intent replaces an older one."""

    def schedule(self, invoice: Invoice | Payable, intent: Intent) -> None: ...

    def drop(self, key: InvoiceKey) -> None: ...

    def update(self, calls: Mapping[InvoiceKey, QueuedCall]) -> None:
        """Schedule each invoice's call, or drop it (None)."""

    async def due_now(self, key: InvoiceKey) -> bool:
        """Make the invoice's queued call due at once, as if never tried; False: none queued."""

    async def claim(self, limit: int, lease_s: float) -> list[PendingRegistration]:
        """Take up to `limit` due calls; not due again for `lease_s` (a crashed worker's
        claims come back by themselves)."""

    async def traces_of(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, str]:
        """The W3C traceparent each queued call was queued under (those that have one)."""

    async def revisions(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, int]:
        """The revision of each queued call of these invoices (locked)."""

    async def reschedule(self, items: Sequence[tuple[PendingRegistration, float]], error: str) -> None:
        """Ask again after the given delays, unless a newer intent replaced the call."""


class UnitOfWork(Protocol):
    @property
    def invoices(self) -> Invoices: ...

    @property
    def snapshots(self) -> Snapshots: ...

    @property
    def registrations(self) -> Registrations: ...

    @property
    def now(self) -> datetime:
        """One moment for the whole unit: what it publishes happened at once."""

    @property
    def event_limit(self) -> int:
        """The most bytes the broker takes in one message on `invoices` (max.message.bytes)."""

    def publish(self, event: Event) -> None: ...

    def reject(self, delivery: Delivery, error: InvalidErpDocument) -> None:
        """Dead-letter a document that can never be applied; the batch goes on."""

    async def commit(self) -> None:
        """Write what the repositories were given and what is to be published."""
