"""Demo invoices taken from the two seed portal pages."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from payments_contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted, ErpPostedPayment

# (account, invoice, order, PO, total, open amount, billing country, what it shows)
# fmt: off
DEMO = [
    ("C-10042", "INV-1001", "SO-5501", "PO-7781", "1250.00", "1250.00", "US",
     "seed 000: the $1,250.00 example, for you to pay on the portal"),
    ("C-10042", "INV-1002", "SO-5502", "PO-7790", "310.40", "310.40", "US",
     "seed 000: full payment only, paid in the walk-through"),
    ("C-10042", "INV-1003", "SO-5503", "PO-7791", "89.99", "0.00", "US",
     "seed 000: zero balance, no Pay button"),
    ("A-20077", "INV-2001", "SO-6601", "PO-A12", "980.00", "980.00", "US",
     "seed 003: partial payments allowed"),
    ("A-20077", "INV-2002", "SO-6602", "PO-A13", "1500.00", "700.00", "US",
     "seed 003: partially paid in the ERP"),
    ("A-30011", "INV-3001", "SO-7701", "PO-C55", "450.00", "450.00", "CA",
     "seed 003: Canada, must pay through a distributor"),
]
# fmt: on


def documents() -> list[ErpInvoiceUpserted]:
    docs = []
    for account, number, order, po, total, open_amount, country, _ in DEMO:
        posted = Decimal(total) - Decimal(open_amount)
        docs.append(
            ErpInvoiceUpserted.originating(
                producer="erp-demo",
                account_id=account,
                payload=ErpInvoiceDocument(
                    invoice_number=number,
                    version=1,
                    order_number=order,
                    po_number=po,
                    invoice_date=date(2026, 10, 15),
                    due_date=date(2026, 11, 14),
                    currency="USD",
                    total=Decimal(total),
                    open_amount=Decimal(open_amount),
                    billing_country=country,
                    posted_payments=(
                        [ErpPostedPayment(reference=f"CHK-{number}", amount=posted)] if posted else []
                    ),
                ),
            )
        )
    return docs
