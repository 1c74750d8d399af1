"""The read API's response documents (the OpenAPI schemas; handlers return the same
shape as pre-built JSON, checked against these in the tests)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from status_projector.domain.status import (
    NotPayableReason,
    PaymentState,
    PayStatus,
)


class MoneyOut(BaseModel):
    amount_minor: int = Field(description="Integer amount in the currency's minor unit")
    currency: str = Field(description="ISO 4217 code")


class CurrentPayment(BaseModel):
    payment_id: str
    state: PaymentState
    amount: MoneyOut = Field(description="Amount of this payment allocated to the invoice")


class LastProblem(BaseModel):
    reason_code: str
    message: str = Field(description="Text a portal may show")
    at: datetime


class RestrictionOut(BaseModel):
    reason_code: str | None = Field(description="The merchant policy's reason, e.g. distributor_country")
    message: str | None = Field(description="Text a portal may show (e.g. whom to pay instead)")


class RefundOut(BaseModel):
    payment_id: str
    state: Literal["requested", "refunded", "failed"]
    amount: MoneyOut = Field(description="What goes back to the customer")
    reason_code: str | None = Field(description="double_payment, late_payment or amount_mismatch")
    at: datetime


class PartitionOffset(BaseModel):
    topic: str
    partition: int
    next_offset: int = Field(description="Everything before this offset is reflected")


class Freshness(BaseModel):
    version: int = Field(description="Read-model version that answered")
    event_time: datetime | None = Field(description="occurred_at of the newest event applied to this item")
    projection_event_time: datetime | None = Field(
        description="occurred_at of the newest event the whole projection applied"
    )
    offsets: list[PartitionOffset] = Field(description="The account's partitions and how far they are read")


class InvoiceOut(BaseModel):
    account_id: str
    invoice_number: str
    order_number: str | None
    po_number: str | None
    invoice_date: date
    due_date: date
    currency: str
    total: MoneyOut
    balance: MoneyOut = Field(
        description="ERP open amount minus succeeded payments the ERP has not posted yet; never negative"
    )
    pay_status: PayStatus
    not_payable_reason: NotPayableReason | None
    pay_button: bool = Field(description="Whether the portal shows the Pay button / lets it be selected")
    pay_button_reason: str | None = Field(
        description="Why the button is hidden: provider_not_configured, pending, paid, "
        "or a not_payable reason"
    )
    current_payment: CurrentPayment | None
    last_problem: LastProblem | None = Field(description="Last rejection or failure")
    restriction: RestrictionOut | None = Field(
        description="Set while the merchant's policy does not let this invoice be paid online "
        "(pay_status not_payable, reason restricted)"
    )
    refund: RefundOut | None = Field(
        description="The latest refund of money taken for this invoice that it must not keep "
        "(paid late, twice, or in another amount). The balance does not change: that money "
        "was never counted as paid."
    )
    freshness: Freshness


class InvoicePage(BaseModel):
    account_id: str
    items: list[InvoiceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")
    freshness: Freshness


class CurrencyBalance(BaseModel):
    currency: str
    balance: MoneyOut
    pay_button: bool = Field(
        description="Account-level PAY: the policy lets the account pay its balance, the provider is "
        "configured and the balance is above zero"
    )
    invoices: int
    by_status: dict[str, int]


class AccountSummary(BaseModel):
    account_id: str
    balances: list[CurrencyBalance]
    pay_button: bool = Field(description="True when any currency's PAY button shows")
    pay_button_reason: str | None = Field(
        description="Why the account PAY button is hidden: the merchant policy's reason "
        "(account_balance_not_allowed), provider_not_configured or zero_balance"
    )
    pay_button_message: str | None = Field(description="Text a portal may show when the policy hides it")
    freshness: Freshness


class Problem404(BaseModel):
    detail: str


class Problem401(BaseModel):
    detail: str


class Problem503(BaseModel):
    """RFC 9457 problem details; `Retry-After` carries the same seconds."""

    type: str = Field(
        description="urn:payments:read-model:unavailable (no database answered in time) or "
        "urn:payments:read-model:behind (none has applied the min_offset passed yet)"
    )
    title: str
    status: Literal[503]
    detail: str
    retry_after_s: int
