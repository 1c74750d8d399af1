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
from invoice_sync.messages import Cause, Event, happened
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


def _events(uow: UnitOfWork, happenings: list[mirror.Happening], cause: Cause) -> list[Event]:
    """What a document will publish, built before anything of it is stored. An event the
    broker would refuse refuses the document here, dead-lettered with the sizes for the
    ERP team: stored, it would have reached neither `invoices` nor the read model, its
    event set aside by the relay with nobody told (an event is about 80 bytes larger than
    its document, so a document just under the broker's limit made one)."""
    events = [happened(happening, cause, uow.now) for happening in happenings]
    limit = uow.event_limit
    for event in events:
        size = event.size_over(limit)
        if size is not None:
            raise InvalidErpDocument(
                "document_too_large",
                f"its {event.type} event would be {size:,} bytes, over the {limit:,}-byte limit of "
                f"the invoices topic (max.message.bytes); make the document at least "
                f"{size - limit:,} bytes smaller (its text fields or posted payments)",
            )
    return events


def _apply(uow: UnitOfWork, current: Invoice | None, invoice: Invoice | None, events: list[Event]) -> None:
    if invoice is not None and invoice is not current:
        _store(uow, invoice)
    for event in events:
        uow.publish(event)


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
    _apply(uow, current, invoice, _events(uow, happenings, Cause.of(message)))


async def on_invoice_cancelled(message: ErpInvoiceCancelled, uow: UnitOfWork) -> None:
    current = await uow.invoices.get(message.account_id, message.payload.invoice_number)
    invoice, happenings = mirror.cancel(
        current,
        account_id=message.account_id,
        invoice_number=message.payload.invoice_number,
        version=message.payload.version,
        source=_source(message),
    )
    _apply(uow, current, invoice, _events(uow, happenings, Cause.of(message)))


async def on_account_snapshot(message: ErpAccountSnapshot, uow: UnitOfWork) -> None:
    """Every open invoice of the account: apply each, close the open ones not listed.

    The snapshot is validated whole before anything is applied: with one document
    unusable we cannot tell which invoices are really missing. So are its events: each
    is built (and checked against the broker's limit) before anything is stored.
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
    cause = Cause.of(message)
    source = Source(str(message.event_id), str(message.correlation_id), snapshot.as_of)
    changes: list[tuple[Invoice | None, Invoice | None, list[Event]]] = []
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
        changes.append((current, invoice, _events(uow, happenings, cause)))
    still_listed = set(numbers)
    for stored in await uow.invoices.of_account(account):
        if stored.invoice_number in still_listed:
            continue
        closed, happenings = mirror.close_missing(stored, as_of=snapshot.as_of, source=source)
        changes.append((stored, closed, _events(uow, happenings, cause)))
    await uow.snapshots.record(account, snapshot.sequence, snapshot.as_of)
    for current, invoice, events in changes:
        _apply(uow, current, invoice, events)


def refuse_card_numbers(message: Envelope) -> None:
    # Python mode: ids, times, dates and amounts stay typed; every free-text field is a str.
    where = card_number_fields(message.model_dump())
    if where:
        raise InvalidErpDocument(
            "card_number_in_document", f"something that looks like a card number in {', '.join(where)}"
        )
