"""Canonical events on `invoices`, built from what the domain says happened.

Every event carries the correlation of the ERP document that caused it: the consumer
passes the document's envelope, the registration worker the document stored with the
invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from invoice_sync.domain.mirror import BalanceChanged, Closed, Happening, Synced
from invoice_sync.domain.model import Invoice
from invoice_sync.domain.registration import Registered, RegistrationFailed, Result
from payments_shared.contracts import Envelope, utc_now
from payments_shared.contracts.invoices import (
    InvoiceBalanceChanged,
    InvoiceBalanceChangedPayload,
    InvoiceClosed,
    InvoiceClosedPayload,
    InvoiceRegistered,
    InvoiceRegisteredPayload,
    InvoiceRegistrationFailed,
    InvoiceRegistrationFailedPayload,
    InvoiceSynced,
    InvoiceSyncedPayload,
    PostedPayment,
)
from payments_shared.domain.money import Money

SERVICE = "invoice-sync"

# Events are assembled with `model_construct`: every value was validated on the way in
# (ERP documents are decoded and normalised, currencies checked), and validating again
# costs more than the rest of applying a document. tests/unit/test_invoice_sync_events.py
# checks that what is built this way validates against the contracts.


@dataclass(frozen=True, slots=True)
class Cause:
    account_id: str
    correlation_id: UUID
    causation_id: UUID | None

    @classmethod
    def of(cls, message: Envelope) -> Cause:
        return cls(message.account_id, message.correlation_id, message.event_id)

    @classmethod
    def stored_with(cls, invoice: Invoice) -> Cause:
        """The ERP document that last changed the invoice (worker-side events)."""
        return cls(
            invoice.account_id,
            UUID(invoice.correlation_id) if invoice.correlation_id else uuid4(),
            UUID(invoice.source_event_id) if invoice.source_event_id else None,
        )


def _header(cause: Cause) -> dict[str, Any]:
    """Every envelope field but type and payload, given explicitly: `model_construct`
    resolving defaults itself is slower than validating."""
    return {
        "event_id": uuid4(),
        "schema_version": 1,
        "occurred_at": utc_now(),
        "producer": SERVICE,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.causation_id,
        "account_id": cause.account_id,
    }


def _money(amount_minor: int, currency: str) -> Money:
    return Money.model_construct(amount_minor=amount_minor, currency=currency)


def happened(happening: Happening, cause: Cause) -> Envelope:
    common = _header(cause)
    invoice = happening.invoice
    if isinstance(happening, Synced):
        return InvoiceSynced.model_construct(type="invoice.synced", payload=synced_payload(invoice), **common)
    if isinstance(happening, BalanceChanged):
        assert invoice.details is not None
        return InvoiceBalanceChanged.model_construct(
            type="invoice.balance_changed",
            payload=InvoiceBalanceChangedPayload.model_construct(
                invoice_number=invoice.invoice_number,
                erp_version=invoice.erp_version,
                previous_open_amount=_money(happening.previous_open_minor, happening.previous_currency),
                open_amount=_money(invoice.details.open_minor, invoice.details.currency),
            ),
            **common,
        )
    assert isinstance(happening, Closed)
    return InvoiceClosed.model_construct(
        type="invoice.closed",
        payload=InvoiceClosedPayload.model_construct(
            invoice_number=invoice.invoice_number,
            erp_version=invoice.erp_version,
            reason=happening.reason,
        ),
        **common,
    )


def synced_payload(invoice: Invoice) -> InvoiceSyncedPayload:
    details = invoice.details
    assert details is not None
    currency = details.currency
    return InvoiceSyncedPayload.model_construct(
        invoice_number=invoice.invoice_number,
        erp_version=invoice.erp_version,
        order_number=details.order_number,
        po_number=details.po_number,
        invoice_date=details.invoice_date,
        due_date=details.due_date,
        total=_money(details.total_minor, currency),
        open_amount=_money(details.open_minor, currency),
        erp_status=invoice.erp_status,
        billing_country=details.billing_country,
        posted_payments=[
            PostedPayment.model_construct(reference=p.reference, amount=_money(p.amount_minor, currency))
            for p in details.posted_payments
        ],
    )


def registration_result(result: Result) -> Envelope:
    invoice = result.invoice
    cause = Cause.stored_with(invoice)
    common = _header(cause)
    if isinstance(result, Registered):
        assert invoice.details is not None
        return InvoiceRegistered.model_construct(
            type="invoice.registered",
            payload=InvoiceRegisteredPayload.model_construct(
                invoice_number=invoice.invoice_number,
                erp_version=invoice.erp_version,
                provider_invoice_id=result.provider_invoice_id,
                amount=_money(result.amount_minor, invoice.details.currency),
            ),
            **common,
        )
    assert isinstance(result, RegistrationFailed)
    return InvoiceRegistrationFailed.model_construct(
        type="invoice.registration_failed",
        payload=InvoiceRegistrationFailedPayload.model_construct(
            invoice_number=invoice.invoice_number,
            erp_version=result.erp_version,
            reason_code=result.code,
            message=result.message,
        ),
        **common,
    )
