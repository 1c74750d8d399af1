"""The unit of work a batch is applied in: the affected invoices and payments are read
in bulk at the start, changed in memory by the handlers, and written back in bulk
(a few round trips per batch, not per event) in the batch's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from payments_shared.contracts import Envelope
from payments_shared.messaging import Transaction

from .adapters.postgres import ParkedEvent, ReadModelStore, VersionTables
from .domain.model import AccountPolicy, Invoice, Park, Payment, invoice_key, payment_key

InvoiceKey = tuple[str, str]


class UnitOfWork:
    def __init__(
        self, tx: Transaction, tables: VersionTables, decoded: dict[object, Envelope] | None = None
    ) -> None:
        self.store = ReadModelStore(tx.connection, tables)
        # Parked events this process decoded before (event id -> message), so a retry
        # need not decode the stored JSON again; the parked table stays the truth.
        self.decoded: dict[object, Envelope] = {} if decoded is None else decoded
        self._invoices: dict[InvoiceKey, Invoice | None] = {}
        self._payments: dict[str, Payment | None] = {}
        self._dirty_invoices: dict[InvoiceKey, Invoice] = {}
        self._dirty_payments: dict[str, Payment] = {}
        self.appeared: set[str] = set()  # waits_for keys that exist now (invoice/payment)
        self.parked: dict[object, ParkedEvent] = {}
        self.unparked: set[object] = set()
        self.last_event_at: datetime | None = None
        self._account_policies: dict[str, AccountPolicy] = {}

    # --- loading ------------------------------------------------------------------------

    async def load(self, invoice_keys: Iterable[InvoiceKey], payment_ids: Iterable[str]) -> None:
        """Read what the coming events touch that is not in memory yet."""
        wanted_payments = {p for p in payment_ids if p not in self._payments}
        keys = set(invoice_keys)
        for loaded in await self.store.payments(wanted_payments):
            self._payments[loaded.payment_id] = loaded
            keys.update((loaded.account_id, number) for number in loaded.allocations)
        for payment_id in wanted_payments:
            self._payments.setdefault(payment_id, None)
        wanted_invoices = {k for k in keys if k not in self._invoices}
        for invoice in await self.store.invoices(wanted_invoices):
            self._invoices[invoice.key] = invoice
        for key in wanted_invoices:
            self._invoices.setdefault(key, None)

    # --- repositories -------------------------------------------------------------------

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
        self.appeared.add(invoice_key(*invoice.key))
        self.changed(invoice)

    def changed(self, invoice: Invoice) -> None:
        self._dirty_invoices[invoice.key] = invoice

    def payment(self, payment_id: str) -> Payment | None:
        return self._payments[payment_id]

    def add_payment(self, payment: Payment) -> None:
        self._payments[payment.payment_id] = payment
        self.appeared.add(payment_key(payment.payment_id))
        self.payment_changed(payment)

    def payment_changed(self, payment: Payment) -> None:
        self._dirty_payments[payment.payment_id] = payment

    def account_policy(self, policy: AccountPolicy) -> None:
        """Kept per account, newest first; the store keeps the newest across batches."""
        current = self._account_policies.get(policy.account_id)
        if current is None or policy.at >= current.at:
            self._account_policies[policy.account_id] = policy

    # --- parking ------------------------------------------------------------------------

    def park(self, message: Envelope, position: tuple[str, int, int], why: Park) -> None:
        topic, partition, offset = position
        self.decoded[message.event_id] = message
        self.parked[message.event_id] = ParkedEvent(
            event_id=message.event_id,
            waits_for=why.waits_for,
            reason=why.reason,
            type=message.type,
            account_id=message.account_id,
            topic=topic,
            partition=partition,
            offset=offset,
            occurred_at=message.occurred_at,
            envelope=message.model_dump_json(),
        )

    def applied_parked(self, event: ParkedEvent) -> None:
        self.parked.pop(event.event_id, None)
        self.unparked.add(event.event_id)

    def saw(self, at: datetime) -> None:
        if self.last_event_at is None or at > self.last_event_at:
            self.last_event_at = at

    # --- writing ------------------------------------------------------------------------

    async def flush(self) -> None:
        invoices = self._dirty_invoices.values()
        for invoice in invoices:
            invoice.refresh()
        await self.store.save_invoices(invoices)
        await self.store.save_payments(self._dirty_payments.values())
        await self.store.save_account_policies(self._account_policies.values())
        await self.store.unpark([e for e in self.unparked if e not in self.parked])
        await self.store.park(list(self.parked.values()))
        if self.last_event_at is not None:
            await self.store.note_progress(self.last_event_at)
