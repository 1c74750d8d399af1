"""Rows of `invoices` <-> the mirrored invoice."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

from invoice_sync.domain.model import Invoice, InvoiceDetails, Payable, PostedPayment, ProviderState

INVOICE_COLUMNS = """
    account_id, invoice_number, erp_version, erp_status, closed_by_snapshot, order_number,
    po_number, invoice_date, due_date, currency, total_minor, open_minor, billing_country,
    posted_payments::text AS posted_payments, source_event_id, correlation_id, erp_occurred_at,
    registered_amount_minor, registered_currency, provider_invoice_id, refusal, refused_version
"""


def invoice_from_row(row: asyncpg.Record) -> Invoice:
    details = None
    if row["currency"] is not None:
        details = InvoiceDetails(
            invoice_number=row["invoice_number"],
            order_number=row["order_number"],
            po_number=row["po_number"],
            invoice_date=row["invoice_date"],
            due_date=row["due_date"],
            currency=row["currency"],
            total_minor=row["total_minor"],
            open_minor=row["open_minor"],
            billing_country=row["billing_country"],
            posted_payments=tuple(
                PostedPayment(p["reference"], p["amount_minor"])
                for p in json.loads(row["posted_payments"] or "[]")
            ),
        )
    return Invoice(
        account_id=row["account_id"],
        invoice_number=row["invoice_number"],
        erp_version=row["erp_version"],
        erp_status=row["erp_status"],
        details=details,
        source_event_id=text_or_none(row["source_event_id"]),
        correlation_id=text_or_none(row["correlation_id"]),
        erp_occurred_at=row["erp_occurred_at"],
        closed_by_snapshot=row["closed_by_snapshot"],
        provider=ProviderState(
            registered_amount_minor=row["registered_amount_minor"],
            registered_currency=row["registered_currency"],
            provider_invoice_id=row["provider_invoice_id"],
            refusal=row["refusal"],
            refused_version=row["refused_version"],
        ),
    )


# Ids as text from the database: converting UUIDs in Python costs more than the row.
PAYABLE_COLUMNS = """
    account_id, invoice_number, erp_version, erp_status, open_minor, currency,
    source_event_id::text, correlation_id::text,
    registered_amount_minor, registered_currency, provider_invoice_id, refusal, refused_version
"""


def payable_from_row(row: asyncpg.Record) -> Payable:
    """A row of PAYABLE_COLUMNS, in their order."""
    account_id, number, version, status, open_minor, currency, source, correlation, *provider = row
    return Payable(
        account_id,
        number,
        version,
        status,
        open_minor,
        currency,
        source,
        correlation,
        ProviderState(*provider),
    )


def text_or_none(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def payments_json(details: InvoiceDetails | None) -> str | None:
    if details is None:
        return None
    if not details.posted_payments:
        return "[]"
    return json.dumps(
        [{"reference": p.reference, "amount_minor": p.amount_minor} for p in details.posted_payments],
        separators=(",", ":"),
    )
