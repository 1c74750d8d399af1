"""ERP invoice documents as the ERP publishes them, for tests of any tier.

A test names only what it cares about (the amount, the country, a version); the rest is a
plain open invoice in USD.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from payments_contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted


def erp_document(
    number: str,
    *,
    version: int = 1,
    total: str = "100.00",
    open_amount: str | None = None,
    currency: str = "USD",
    country: str = "US",
    invoice_date: date = date(2026, 11, 1),
    due_date: date = date(2026, 12, 1),
    **fields: Any,
) -> ErpInvoiceDocument:
    """An open invoice; `open_amount` defaults to the whole `total`."""
    return ErpInvoiceDocument(
        invoice_number=number,
        version=version,
        invoice_date=invoice_date,
        due_date=due_date,
        currency=currency,
        total=Decimal(total),
        open_amount=Decimal(open_amount if open_amount is not None else total),
        billing_country=country,
        **fields,
    )


def erp_invoice(account: str, number: str, *, producer: str = "erp", **document: Any) -> ErpInvoiceUpserted:
    """`erp.invoice.upserted` for `account`; `document` as for `erp_document`."""
    return ErpInvoiceUpserted.originating(
        producer=producer, account_id=account, payload=erp_document(number, **document)
    )
