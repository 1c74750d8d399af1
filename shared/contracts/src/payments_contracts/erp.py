"""What the ERP produces on `erp.invoices`.

Amounts arrive as decimal strings in major units ("1250.00"); invoice-sync checks
them against the currency's exponent and turns them into minor units. A JSON number
is refused (a float cannot carry money exactly): the document is dead-lettered with
the reason in `dlq.error`. The contract is otherwise structural: semantic validation
(known currency, open amount not above total, precision) is invoice-sync's, with
precise reasons in `dlq.reason`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

from .envelope import Envelope, InvoiceNumber, Payload

AMOUNT_RULE = (
    "A decimal string in the currency's major unit with at most the currency's exponent of "
    'decimal places (ISO 4217: "1250.00" USD, "1250" JPY, "1250.000" KWD), never negative. '
    "Never a JSON number: a number is refused (dead-lettered with the reason in dlq.error)."
)


def _decimal_string(value: object) -> object:
    # JSON numbers arrive as int or float; Decimal only from Python callers building models.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f"an ERP amount is a decimal string in major units such as \"1250.00\", never a JSON "
            f"number (got {value!r})"
        )
    return value


DecimalAmount = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    BeforeValidator(_decimal_string),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,4})?$", "description": AMOUNT_RULE,
         "examples": ["1250.00"]}
    ),
]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class ErpPostedPayment(Payload):
    """A payment the ERP has already applied to the invoice's open amount."""

    reference: str = Field(
        min_length=1,
        max_length=128,
        description="For a payment made through us: our `payment_id` from payment.succeeded, exactly "
        "(UUID text). The read model then stops subtracting that payment from the open amount, so it "
        "is never subtracted twice; any other reference is a payment the ERP received elsewhere.",
    )
    amount: DecimalAmount
    posted_at: datetime | None = None


class ErpInvoiceDocument(Payload):
    """The whole invoice as the ERP holds it now. `open_amount` already has `posted_payments`
    deducted. The account's merchant is not in the message: the merchant file
    (`PAYMENTS_MERCHANT_CONFIG`) lists each merchant's accounts."""

    invoice_number: InvoiceNumber
    version: int = Field(ge=0, description="ERP sequence number; higher wins per invoice")
    order_number: str | None = None
    po_number: str | None = None
    invoice_date: date
    due_date: date
    currency: str = Field(
        min_length=3, max_length=3, description="ISO 4217 code; it fixes the amounts' exponent"
    )
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
