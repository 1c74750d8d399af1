"""Invoice events (from invoice-sync): the ERP's facts and the provider registration."""

from __future__ import annotations

from payments_contracts.invoices import (
    InvoiceBalanceChanged,
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)
from status_projector.domain.model import ErpFacts, Invoice, Problem
from status_projector.projection_batch import ProjectionBatch


def on_invoice_synced(message: InvoiceSynced, batch: ProjectionBatch) -> None:
    p = message.payload
    facts = ErpFacts(
        erp_version=p.erp_version,
        currency=p.total.currency,
        order_number=p.order_number,
        po_number=p.po_number,
        invoice_date=p.invoice_date,
        due_date=p.due_date,
        total_minor=p.total.amount_minor,
        open_amount_minor=p.open_amount.amount_minor,
        erp_status=p.erp_status,
        billing_country=p.billing_country,
        posted_refs=sorted({pp.reference for pp in p.posted_payments}),
    )
    invoice = batch.invoice(message.account_id, p.invoice_number)
    if invoice is None:
        invoice = Invoice.from_erp(message.account_id, p.invoice_number, facts)
        batch.add_invoice(invoice)
    elif invoice.take_erp_facts(facts):
        batch.changed(invoice)
    else:
        return
    invoice.touched(message.occurred_at)


def on_invoice_balance_changed(message: InvoiceBalanceChanged, batch: ProjectionBatch) -> None:
    p = message.payload
    invoice = batch.require_invoice(message.account_id, p.invoice_number)
    if invoice.take_open_amount(p.erp_version, p.open_amount.amount_minor):
        invoice.touched(message.occurred_at)
        batch.changed(invoice)


def on_invoice_registered(message: InvoiceRegistered, batch: ProjectionBatch) -> None:
    p = message.payload
    invoice = batch.require_invoice(message.account_id, p.invoice_number)
    # At the same ERP version a success is final: a replayed earlier failure of that
    # version must not undo it.
    if p.erp_version >= invoice.registration_version:
        invoice.registration = "registered"
        invoice.registration_version = p.erp_version
        invoice.touched(message.occurred_at)
        batch.changed(invoice)


def on_invoice_registration_failed(message: InvoiceRegistrationFailed, batch: ProjectionBatch) -> None:
    p = message.payload
    invoice = batch.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version > invoice.registration_version or (
        p.erp_version == invoice.registration_version and invoice.registration != "registered"
    ):
        invoice.registration = "failed"
        invoice.registration_version = p.erp_version
        invoice.note_problem(Problem(p.reason_code, p.message, message.occurred_at))
        invoice.touched(message.occurred_at)
        batch.changed(invoice)


def on_invoice_closed(message: InvoiceClosed, batch: ProjectionBatch) -> None:
    p = message.payload
    invoice = batch.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version >= invoice.closed_version:
        invoice.closed_reason = p.reason
        invoice.closed_version = p.erp_version
        invoice.touched(message.occurred_at)
        batch.changed(invoice)
