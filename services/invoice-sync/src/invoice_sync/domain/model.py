"""The mirrored invoice: what the ERP last stated, and what the provider last accepted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

ErpStatus = Literal["open", "closed", "cancelled"]
InvoiceKey = tuple[str, str]  # (account id, invoice number)


@dataclass(frozen=True, slots=True)
class PostedPayment:
    """A payment the ERP already subtracted from the open amount, by the ERP's reference."""

    reference: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class InvoiceDetails:
    """An ERP invoice document after validation: amounts in the currency's minor units."""

    invoice_number: str
    order_number: str | None
    po_number: str | None
    invoice_date: date
    due_date: date
    currency: str
    total_minor: int
    open_minor: int
    billing_country: str
    posted_payments: tuple[PostedPayment, ...] = ()


@dataclass(slots=True)
class ProviderState:
    """What the payment provider holds for the invoice, as last confirmed by it."""

    registered_amount_minor: int | None = None
    registered_currency: str | None = None
    provider_invoice_id: str | None = None
    refusal: str | None = None  # reason code of the last permanent refusal
    refused_version: int | None = None  # the ERP version the provider refused

    @property
    def registered(self) -> bool:
        return self.registered_amount_minor is not None


def payable_minor(erp_status: ErpStatus, open_minor: int | None) -> int:
    """What the provider should collect: the open amount of an open invoice, else 0."""
    return open_minor if erp_status == "open" and open_minor is not None else 0


@dataclass(slots=True)
class Invoice:
    """One invoice of one account as this service mirrors it.

    `details` is None for a tombstone: a cancellation of an invoice we never saw, kept
    so that an older document arriving late cannot bring the invoice back.
    """

    account_id: str
    invoice_number: str
    erp_version: int
    erp_status: ErpStatus
    details: InvoiceDetails | None
    # The ERP document that last changed this invoice: events it causes carry it.
    source_event_id: str | None = None
    correlation_id: str | None = None
    erp_occurred_at: datetime | None = None
    # Closed because an account snapshot no longer listed it (not by an ERP document):
    # a later snapshot listing the same version opens it again.
    closed_by_snapshot: bool = False
    provider: ProviderState = field(default_factory=ProviderState)

    @property
    def key(self) -> InvoiceKey:
        return (self.account_id, self.invoice_number)

    @property
    def is_open(self) -> bool:
        return self.erp_status == "open" and self.details is not None

    @property
    def currency(self) -> str | None:
        return None if self.details is None else self.details.currency

    @property
    def payable_balance_minor(self) -> int:
        return payable_minor(self.erp_status, None if self.details is None else self.details.open_minor)

    @property
    def payable(self) -> Payable:
        details = self.details
        return Payable(
            account_id=self.account_id,
            invoice_number=self.invoice_number,
            erp_version=self.erp_version,
            erp_status=self.erp_status,
            open_minor=None if details is None else details.open_minor,
            currency=None if details is None else details.currency,
            source_event_id=self.source_event_id,
            correlation_id=self.correlation_id,
            provider=self.provider,
        )


@dataclass(slots=True)
class Payable:
    """An invoice as its registration with the provider sees it: what the provider should
    collect and what it holds, without the rest of the ERP document.

    The registration worker records hundreds of provider answers per transaction and
    reads only this much of each invoice (loading whole invoices cost more than the rest
    of recording an answer). `open_minor` and `currency` are None for a tombstone.
    """

    account_id: str
    invoice_number: str
    erp_version: int
    erp_status: ErpStatus
    open_minor: int | None
    currency: str | None
    source_event_id: str | None
    correlation_id: str | None
    provider: ProviderState

    @property
    def key(self) -> InvoiceKey:
        return (self.account_id, self.invoice_number)

    @property
    def payable_balance_minor(self) -> int:
        return payable_minor(self.erp_status, self.open_minor)

    def holding(self, provider: ProviderState) -> Payable:
        """The same invoice with what the provider now holds."""
        return Payable(
            self.account_id,
            self.invoice_number,
            self.erp_version,
            self.erp_status,
            self.open_minor,
            self.currency,
            self.source_event_id,
            self.correlation_id,
            provider,
        )
