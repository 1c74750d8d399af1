"""What the ERP produces on `erp.invoices`.

Amounts arrive as decimal strings in major units ("1250.00"); invoice-sync checks
them against the currency's exponent and turns them into minor units. The contract
is deliberately structural: semantic validation (known currency, open amount not
above total, precision) is invoice-sync's, with precise reasons.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .envelope import Envelope, InvoiceNumber, Payload

DecimalAmount = Annotated[Decimal, Field(allow_inf_nan=False)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class ErpPostedPayment(Payload):
    """A payment the ERP has already applied to the invoice's open amount."""

    reference: str = Field(min_length=1, max_length=128)
    amount: DecimalAmount
    posted_at: datetime | None = None


class ErpInvoiceDocument(Payload):
    invoice_number: InvoiceNumber
    version: int = Field(ge=0, description="ERP sequence number; higher wins per invoice")
    order_number: str | None = None
    po_number: str | None = None
    invoice_date: date
    due_date: date
    currency: str = Field(min_length=3, max_length=3)
    total: DecimalAmount
    open_amount: DecimalAmount
    status: Literal["open", "closed", "cancelled"] = "open"
    billing_country: CountryCode
    posted_payments: list[ErpPostedPayment] = Field(default_factory=list)


class ErpInvoiceCancelledPayload(Payload):
    invoice_number: InvoiceNumber
    version: int = Field(ge=0)


class ErpAccountSnapshotPayload(Payload):
    """Every open invoice of the account as of `as_of`; an invoice missing here is closed."""

    as_of: datetime
    sequence: int = Field(ge=0)
    invoices: list[ErpInvoiceDocument]


class ErpInvoiceUpserted(Envelope):
    type: Literal["erp.invoice.upserted"] = "erp.invoice.upserted"
    payload: ErpInvoiceDocument


class ErpInvoiceCancelled(Envelope):
    type: Literal["erp.invoice.cancelled"] = "erp.invoice.cancelled"
    payload: ErpInvoiceCancelledPayload


class ErpAccountSnapshot(Envelope):
    type: Literal["erp.account.snapshot"] = "erp.account.snapshot"
    payload: ErpAccountSnapshotPayload


ErpInvoiceMessage = Annotated[
    ErpInvoiceUpserted | ErpInvoiceCancelled | ErpAccountSnapshot, Field(discriminator="type")
]
