"""Canonical invoice events on `invoices`, produced by invoice-sync."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from payments_contracts.money import Money

from .envelope import Envelope, InvoiceNumber, Payload
from .erp import CountryCode


class PostedPayment(Payload):
    reference: str
    amount: Money


class InvoiceSyncedPayload(Payload):
    """The whole invoice as the ERP last stated it (newest version only)."""

    invoice_number: InvoiceNumber
    erp_version: int
    order_number: str | None
    po_number: str | None
    invoice_date: date
    due_date: date
    total: Money
    open_amount: Money
    erp_status: Literal["open", "closed", "cancelled"]
    billing_country: CountryCode
    posted_payments: list[PostedPayment]


class InvoiceRegisteredPayload(Payload):
    """The provider accepted the invoice for payment ("sent for payment processing")."""

    invoice_number: InvoiceNumber
    erp_version: int
    provider_invoice_id: str
    amount: Money


class InvoiceBalanceChangedPayload(Payload):
    """The ERP's open amount of a known invoice changed (payments posted, credit notes)."""

    invoice_number: InvoiceNumber
    erp_version: int
    previous_open_amount: Money
    open_amount: Money


class InvoiceRegistrationFailedPayload(Payload):
    invoice_number: InvoiceNumber
    erp_version: int
    reason_code: str
    message: str


class InvoiceClosedPayload(Payload):
    """No longer payable: cancelled in the ERP, or missing from an account snapshot."""

    invoice_number: InvoiceNumber
    erp_version: int
    reason: Literal["cancelled", "closed", "missing_from_snapshot"]


class InvoiceSynced(Envelope):
    type: Literal["invoice.synced"] = "invoice.synced"
    payload: InvoiceSyncedPayload


class InvoiceBalanceChanged(Envelope):
    type: Literal["invoice.balance_changed"] = "invoice.balance_changed"
    payload: InvoiceBalanceChangedPayload


class InvoiceRegistered(Envelope):
    type: Literal["invoice.registered"] = "invoice.registered"
    payload: InvoiceRegisteredPayload


class InvoiceRegistrationFailed(Envelope):
    type: Literal["invoice.registration_failed"] = "invoice.registration_failed"
    payload: InvoiceRegistrationFailedPayload


class InvoiceClosed(Envelope):
    type: Literal["invoice.closed"] = "invoice.closed"
    payload: InvoiceClosedPayload


InvoiceEvent = Annotated[
    InvoiceSynced
    | InvoiceBalanceChanged
    | InvoiceRegistered
    | InvoiceRegistrationFailed
    | InvoiceClosed,
    Field(discriminator="type"),
]
