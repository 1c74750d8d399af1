"""ERP documents: an invoice upserted or cancelled, an account's snapshot.

Each changed invoice is kept with what the provider must be asked next (the newest
intent replaces an older one), so the registration worker makes the provider hold
what the invoice says.
"""

from __future__ import annotations

import logging

from invoice_sync.domain import mirror
from invoice_sync.domain.mirror import Source
from invoice_sync.domain.model import Invoice
from invoice_sync.domain.normalise import InvalidErpDocument, normalise
from invoice_sync.domain.registration import intent_for
from invoice_sync.messages import Cause, happened
from invoice_sync.unit_of_work import UnitOfWork
from payments_contracts import Envelope
from payments_contracts.card_numbers import card_number_fields
from payments_contracts.erp import ErpAccountSnapshot, ErpInvoiceCancelled, ErpInvoiceUpserted

log = logging.getLogger(__name__)


def _source(message: Envelope) -> Source:
    return Source(str(message.event_id), str(message.correlation_id), message.occurred_at)


def _store(uow: UnitOfWork, invoice: Invoice) -> None:
    uow.invoices.put(invoice)
    intent = intent_for(invoice)
    if intent is None:
        uow.registrations.drop(invoice.key)
    else:
        uow.registrations.schedule(invoice, intent)


def _publish_all(uow: UnitOfWork, happenings: list[mirror.Happening], cause: Cause) -> None:
    for happening in happenings:
        uow.publish(happened(happening, cause, uow.now))


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
        _store(uow, invoice)
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
        _store(uow, invoice)
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
            _store(uow, invoice)
        _publish_all(uow, happenings, cause)
    still_listed = set(numbers)
    for stored in await uow.invoices.of_account(account):
        if stored.invoice_number in still_listed:
            continue
        closed, happenings = mirror.close_missing(stored, as_of=snapshot.as_of, source=source)
        if closed is not stored:
            _store(uow, closed)
        _publish_all(uow, happenings, cause)


def refuse_card_numbers(message: Envelope) -> None:
    # Python mode: ids, times, dates and amounts stay typed; every free-text field is a str.
    where = card_number_fields(message.model_dump())
    if where:
        raise InvalidErpDocument(
            "card_number_in_document", f"something that looks like a card number in {', '.join(where)}"
        )
