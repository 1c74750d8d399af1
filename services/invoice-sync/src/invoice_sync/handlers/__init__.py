"""The route table of ERP documents, and the batch entry the consumer calls.

A batch is applied in one transaction: the invoices it touches are loaded (and locked)
up front, each document is applied in order to the in-memory invoices, and the changed
invoices and their pending provider calls are written back in a few statements.
A document that fails validation is dead-lettered on its own; the batch goes on.
So is a document with anything that looks like a card number in any of its fields: it
is never applied, and the dead letter carries it with the number masked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from invoice_sync.domain.normalise import InvalidErpDocument
from invoice_sync.unit_of_work import UnitOfWork
from payments_contracts import Envelope
from payments_contracts.erp import ErpAccountSnapshot, ErpInvoiceCancelled, ErpInvoiceUpserted
from payments_platform.messaging import Delivery

from .erp import on_account_snapshot, on_invoice_cancelled, on_invoice_upserted, refuse_card_numbers
from .registrations import on_provider_answers

__all__ = ["HANDLERS", "apply_batch", "on_provider_answers"]


Handler = Callable[[Any, UnitOfWork], Awaitable[None]]

HANDLERS: dict[type[Envelope], Handler] = {
    ErpInvoiceUpserted: on_invoice_upserted,
    ErpInvoiceCancelled: on_invoice_cancelled,
    ErpAccountSnapshot: on_account_snapshot,
}


async def apply_batch(deliveries: Sequence[Delivery], uow: UnitOfWork) -> None:
    """Apply a batch of ERP documents in `uow` (see the module docstring)."""
    keys = []
    accounts = []
    for delivery in deliveries:
        message = delivery.message
        if isinstance(message, ErpInvoiceUpserted | ErpInvoiceCancelled):
            keys.append((message.account_id, message.payload.invoice_number))
        elif isinstance(message, ErpAccountSnapshot):
            accounts.append(message.account_id)
    await uow.invoices.preload(keys, accounts)
    for delivery in deliveries:
        handler = HANDLERS.get(type(delivery.message))
        if handler is None:
            continue
        # The consumer logs the dead letter (with its position, reason and event id)
        # once the batch is committed.
        try:
            refuse_card_numbers(delivery.message)
            await handler(delivery.message, uow)
        except InvalidErpDocument as exc:
            uow.reject(delivery, exc)
    await uow.commit()
