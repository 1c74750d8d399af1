"""One handler per ERP message type, and the batch handler the consumer calls.

A batch is applied in one transaction: the invoices it touches are loaded (and locked)
up front, each document is applied in order to the in-memory invoices, and the changed
invoices and their pending provider calls are written back in a few statements.
A document that fails validation is dead-lettered on its own; the batch goes on.
So is a document with anything that looks like a card number in any of its fields: it
is never applied, and the dead letter carries it with the number masked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from invoice_sync.domain import mirror
from invoice_sync.domain.mirror import Source
from invoice_sync.domain.normalise import InvalidErpDocument, normalise
from invoice_sync.events import Cause, happened
from invoice_sync.unit_of_work import UnitOfWork
from payments_shared.contracts import Envelope
from payments_shared.contracts.erp import (
    ErpAccountSnapshot,
    ErpInvoiceCancelled,
    ErpInvoiceUpserted,
)
from payments_shared.domain.card_numbers import (
    card_number_fields,
    redact_card_numbers,
)
from payments_shared.messaging import Delivery, Transaction

log = logging.getLogger(__name__)


def _source(message: Envelope) -> Source:
    return Source(str(message.event_id), str(message.correlation_id), message.occurred_at)


def _publish_all(uow: UnitOfWork, happenings: list[mirror.Happening], cause: Cause) -> None:
    for happening in happenings:
        uow.emit(happened(happening, cause, uow.now))


async def on_invoice_upserted(message: ErpInvoiceUpserted, uow: UnitOfWork) -> None:
    doc = message.payload
    details = normalise(doc)
    current = await uow.invoices.get(message.account_id, details.invoice_number)
    invoice, happenings = mirror.upsert(
        current,
        account_id=message.account_id,
        version=doc.version,
        status=doc.status,
        details=details,
        source=_source(message),
    )
    if invoice is not None and invoice is not current:
        uow.invoices.put(invoice)
    _publish_all(uow, happenings, Cause.of(message))


async def on_invoice_cancelled(message: ErpInvoiceCancelled, uow: UnitOfWork) -> None:
    current = await uow.invoices.get(message.account_id, message.payload.invoice_number)
    invoice, happenings = mirror.cancel(
        current,
        account_id=message.account_id,
        invoice_number=message.payload.invoice_number,
        version=message.payload.version,
        source=_source(message),
    )
    if invoice is not None and invoice is not current:
        uow.invoices.put(invoice)
    _publish_all(uow, happenings, Cause.of(message))


async def on_account_snapshot(message: ErpAccountSnapshot, uow: UnitOfWork) -> None:
    """Every open invoice of the account: apply each, close the open ones not listed.

    The snapshot is validated whole before anything is applied: with one document
    unusable we cannot tell which invoices are really missing.
    """
    snapshot = message.payload
    account = message.account_id
    listed = [(doc, normalise(doc)) for doc in snapshot.invoices]
    numbers = [details.invoice_number for _, details in listed]
    if len(set(numbers)) != len(numbers):
        raise InvalidErpDocument("duplicate_invoice_in_snapshot", "an invoice is listed twice")
    if not mirror.is_newer_snapshot(await uow.snapshots.sequence(account), snapshot.sequence):
        log.info("stale or repeated snapshot ignored", extra={"sequence": snapshot.sequence})
        return
    await uow.snapshots.record(account, snapshot.sequence, snapshot.as_of)
    cause = Cause.of(message)
    source = Source(str(message.event_id), str(message.correlation_id), snapshot.as_of)
    for doc, details in listed:
        current = await uow.invoices.get(account, details.invoice_number)
        invoice, happenings = mirror.upsert(
            current,
            account_id=account,
            version=doc.version,
            status=doc.status,
            details=details,
            source=source,
            from_snapshot=True,
        )
        if invoice is not None and invoice is not current:
            uow.invoices.put(invoice)
        _publish_all(uow, happenings, cause)
    still_listed = set(numbers)
    for stored in await uow.invoices.of_account(account):
        if stored.invoice_number in still_listed:
            continue
        closed, happenings = mirror.close_missing(stored, as_of=snapshot.as_of, source=source)
        if closed is not stored:
            uow.invoices.put(closed)
        _publish_all(uow, happenings, cause)


def refuse_card_numbers(message: Envelope) -> None:
    # Python mode: ids, times, dates and amounts stay typed; every free-text field is a str.
    where = card_number_fields(message.model_dump())
    if where:
        raise InvalidErpDocument(
            "card_number_in_document", f"something that looks like a card number in {', '.join(where)}"
        )


Handler = Callable[[Any, UnitOfWork], Awaitable[None]]

HANDLERS: dict[type[Envelope], Handler] = {
    ErpInvoiceUpserted: on_invoice_upserted,
    ErpInvoiceCancelled: on_invoice_cancelled,
    ErpAccountSnapshot: on_account_snapshot,
}


async def handle_batch(deliveries: Sequence[Delivery], tx: Transaction) -> None:
    """The consumer's batch handler (see the module docstring)."""
    uow = UnitOfWork(tx)
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
        # Not `observability.about()` per message: binding context costs as much as
        # applying a document; the one log line here names the document itself.
        try:
            refuse_card_numbers(delivery.message)
            await handler(delivery.message, uow)
        except InvalidErpDocument as exc:
            log.warning(
                "ERP document rejected; dead-lettered",
                extra={
                    "reason": exc.reason_code,
                    "detail": exc.message,
                    "event_id": str(delivery.message.event_id),
                    "correlation_id": str(delivery.message.correlation_id),
                    "account_id": redact_card_numbers(delivery.message.account_id),
                    "offset": delivery.offset,
                },
            )
            uow.reject(delivery, exc)
    await uow.commit()
