"""Turn an ERP document into invoice details, or say precisely why it cannot be used.

Structural problems (missing fields, wrong types) are caught when the message is
decoded; what is left here is semantic: the currency, the amounts and their precision,
and amounts that contradict each other.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from payments_contracts.erp import ErpInvoiceDocument
from payments_contracts.money import CURRENCY_EXPONENTS

from .model import InvoiceDetails, PostedPayment

# Amounts are stored as PostgreSQL bigint minor units.
MAX_MINOR = 2**63 - 1


class InvalidErpDocument(ValueError):
    """An ERP document that can never be applied; `reason_code` is stable for tooling."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


def currency_of(code: str) -> tuple[str, int]:
    """The normalised ISO 4217 code and its exponent; ERPs are not consistent about case."""
    normalised = code.strip().upper()
    exponent = CURRENCY_EXPONENTS.get(normalised)
    if exponent is None:
        raise InvalidErpDocument("unknown_currency", f"{code!r} is not an active ISO 4217 currency")
    return normalised, exponent


def to_minor(amount: Decimal, exponent: int, currency: str, what: str) -> int:
    """A non-negative major-unit amount as exact minor units ("12.50" USD -> 1250)."""
    if not amount.is_finite():
        raise InvalidErpDocument("invalid_amount", f"{what} {amount} is not a number")
    if amount < 0:
        raise InvalidErpDocument("negative_amount", f"{what} {amount} is negative")
    try:
        scaled = amount.scaleb(exponent)
        integral = scaled.to_integral_value()
    except InvalidOperation:
        raise InvalidErpDocument("amount_out_of_range", f"{what} {amount} is too large") from None
    if scaled != integral:
        raise InvalidErpDocument(
            "too_many_decimals",
            f"{what} {amount} has more than {exponent} decimal places allowed for {currency}",
        )
    minor = int(integral)
    if minor > MAX_MINOR:
        raise InvalidErpDocument("amount_out_of_range", f"{what} {amount} is too large")
    return minor


def normalise(doc: ErpInvoiceDocument) -> InvoiceDetails:
    currency, exponent = currency_of(doc.currency)
    total = to_minor(doc.total, exponent, currency, "total")
    open_amount = to_minor(doc.open_amount, exponent, currency, "open_amount")
    if open_amount > total:
        raise InvalidErpDocument(
            "open_amount_above_total",
            f"open amount {doc.open_amount} is above the total {doc.total} {currency}",
        )
    if doc.due_date < doc.invoice_date:
        raise InvalidErpDocument(
            "due_date_before_invoice_date",
            f"due date {doc.due_date} is before the invoice date {doc.invoice_date}",
        )
    payments = []
    seen: set[str] = set()
    for i, posted in enumerate(doc.posted_payments):
        if posted.reference in seen:
            raise InvalidErpDocument(
                "duplicate_payment_reference",
                f"payment reference {posted.reference!r} appears twice",
            )
        seen.add(posted.reference)
        amount = to_minor(posted.amount, exponent, currency, f"posted_payments[{i}].amount")
        payments.append(PostedPayment(posted.reference, amount))
    return InvoiceDetails(
        invoice_number=doc.invoice_number,
        order_number=_blank_to_none(doc.order_number),
        po_number=_blank_to_none(doc.po_number),
        invoice_date=doc.invoice_date,
        due_date=doc.due_date,
        currency=currency,
        total_minor=total,
        open_minor=open_amount,
        billing_country=doc.billing_country,
        posted_payments=tuple(payments),
    )


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None
