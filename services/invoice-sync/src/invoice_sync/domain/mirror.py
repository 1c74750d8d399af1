"""Version ordering: the ERP feed repeats, reorders and skips; the newest version wins.

Each function takes the invoice as stored (or None) and an ERP fact, and returns the
invoice as it should now be stored plus what happened. An older version than the one
stored is ignored, and so is a repeat of the stored version: neither has any effect.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from .model import ErpStatus, Invoice, InvoiceDetails, ProviderState

CloseReason = Literal["cancelled", "closed", "missing_from_snapshot"]


@dataclass(frozen=True, slots=True)
class Source:
    """The ERP document being applied: events it causes are correlated to it."""

    event_id: str
    correlation_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Synced:
    """The stored version changed: the whole invoice as the ERP now states it."""

    invoice: Invoice


@dataclass(frozen=True, slots=True)
class BalanceChanged:
    invoice: Invoice
    previous_open_minor: int
    previous_currency: str


@dataclass(frozen=True, slots=True)
class Closed:
    invoice: Invoice
    reason: CloseReason


Happening = Synced | BalanceChanged | Closed


def is_newer(current: Invoice | None, version: int) -> bool:
    return current is None or version > current.erp_version


def upsert(
    current: Invoice | None,
    *,
    account_id: str,
    version: int,
    status: ErpStatus,
    details: InvoiceDetails,
    source: Source,
    from_snapshot: bool = False,
) -> tuple[Invoice | None, list[Happening]]:
    """Apply an invoice document (created or changed, or listed in a snapshot)."""
    reopened_by_snapshot = (
        from_snapshot
        and current is not None
        and current.closed_by_snapshot
        and version == current.erp_version
        and status == "open"
    )
    if not is_newer(current, version) and not reopened_by_snapshot:
        return current, []
    invoice = Invoice(
        account_id=account_id,
        invoice_number=details.invoice_number,
        erp_version=version,
        erp_status=status,
        details=details,
        source_event_id=source.event_id,
        correlation_id=source.correlation_id,
        erp_occurred_at=source.occurred_at,
        provider=current.provider if current is not None else ProviderState(),
    )
    happened: list[Happening] = [Synced(invoice)]
    before = current.details if current is not None else None
    if before is not None and (
        before.open_minor != details.open_minor or before.currency != details.currency
    ):
        happened.append(BalanceChanged(invoice, before.open_minor, before.currency))
    if status != "open" and (current is None or current.erp_status != status):
        happened.append(Closed(invoice, status))
    return invoice, happened


def cancel(
    current: Invoice | None,
    *,
    account_id: str,
    invoice_number: str,
    version: int,
    source: Source,
) -> tuple[Invoice | None, list[Happening]]:
    """Apply a cancellation. One for an invoice never seen leaves a tombstone, no events."""
    if not is_newer(current, version):
        return current, []
    if current is None or current.details is None:
        tombstone = Invoice(
            account_id=account_id,
            invoice_number=invoice_number,
            erp_version=version,
            erp_status="cancelled",
            details=None,
            source_event_id=source.event_id,
            correlation_id=source.correlation_id,
            erp_occurred_at=source.occurred_at,
            provider=current.provider if current is not None else ProviderState(),
        )
        return tombstone, []
    invoice = replace(
        current,
        erp_version=version,
        erp_status="cancelled",
        source_event_id=source.event_id,
        correlation_id=source.correlation_id,
        erp_occurred_at=source.occurred_at,
        closed_by_snapshot=False,
    )
    happened: list[Happening] = [Synced(invoice)]
    if current.erp_status != "cancelled":
        happened.append(Closed(invoice, "cancelled"))
    return invoice, happened


def is_newer_snapshot(stored_sequence: int | None, sequence: int) -> bool:
    return stored_sequence is None or sequence > stored_sequence


def close_missing(current: Invoice, *, as_of: datetime, source: Source) -> tuple[Invoice, list[Happening]]:
    """An open invoice that an account snapshot does not list is no longer open.

    Unless the ERP changed it after the snapshot was taken: then the snapshot is
    simply older than what we know (the feed reorders), and the invoice stays.
    """
    if not current.is_open:
        return current, []
    if current.erp_occurred_at is not None and current.erp_occurred_at > as_of:
        return current, []
    invoice = replace(
        current,
        erp_status="closed",
        closed_by_snapshot=True,
        source_event_id=source.event_id,
        correlation_id=source.correlation_id,
    )
    return invoice, [Closed(invoice, "missing_from_snapshot")]
