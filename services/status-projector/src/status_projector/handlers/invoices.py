"""Invoice events (from invoice-sync): the ERP's facts and the provider registration."""

from __future__ import annotations

from payments_contracts.invoices import (
    InvoiceBalanceChanged,
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)
from status_projector.domain.model import Invoice, Problem
from status_projector.unit_of_work import UnitOfWork


def on_invoice_synced(message: InvoiceSynced, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.invoice(message.account_id, p.invoice_number)
    if invoice is None:
        invoice = Invoice(
            account_id=message.account_id,
            invoice_number=p.invoice_number,
            currency=p.total.currency,
            order_number=p.order_number,
            po_number=p.po_number,
            invoice_date=p.invoice_date,
            due_date=p.due_date,
            total_minor=p.total.amount_minor,
            open_amount_minor=p.open_amount.amount_minor,
            erp_status=p.erp_status,
            erp_version=p.erp_version,
            billing_country=p.billing_country,
            posted_refs=sorted({pp.reference for pp in p.posted_payments}),
        )
        uow.add_invoice(invoice)
    elif p.erp_version >= invoice.erp_version:  # an older ERP version changes nothing
        invoice.currency = p.total.currency
        invoice.order_number = p.order_number
        invoice.po_number = p.po_number
        invoice.invoice_date = p.invoice_date
        invoice.due_date = p.due_date
        invoice.total_minor = p.total.amount_minor
        invoice.open_amount_minor = p.open_amount.amount_minor
        invoice.erp_status = p.erp_status
        invoice.erp_version = p.erp_version
        invoice.billing_country = p.billing_country
        invoice.posted_refs = sorted({pp.reference for pp in p.posted_payments})
        uow.changed(invoice)
    else:
        return
    invoice.touched(message.occurred_at)


def on_invoice_balance_changed(message: InvoiceBalanceChanged, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version < invoice.erp_version:
        return
    invoice.open_amount_minor = p.open_amount.amount_minor
    invoice.erp_version = p.erp_version
    invoice.touched(message.occurred_at)
    uow.changed(invoice)


def on_invoice_registered(message: InvoiceRegistered, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    # At the same ERP version a success is final: a replayed earlier failure of that
    # version must not undo it.
    if p.erp_version >= invoice.registration_version:
        invoice.registration = "registered"
        invoice.registration_version = p.erp_version
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


def on_invoice_registration_failed(message: InvoiceRegistrationFailed, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version > invoice.registration_version or (
        p.erp_version == invoice.registration_version and invoice.registration != "registered"
    ):
        invoice.registration = "failed"
        invoice.registration_version = p.erp_version
        invoice.note_problem(Problem(p.reason_code, p.message, message.occurred_at))
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


def on_invoice_closed(message: InvoiceClosed, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version >= invoice.closed_version:
        invoice.closed_reason = p.reason
        invoice.closed_version = p.erp_version
        invoice.touched(message.occurred_at)
        uow.changed(invoice)
