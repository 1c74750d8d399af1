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
    payment_id: str = Field(description="Our payment id (the `payment_id` of its payments.events)")
    state: PaymentState = Field(
        description="requested, checkout_opened or processing (the invoice is pending); succeeded; "
        "failed, cancelled or expired (the invoice is payable again)"
    )
    amount: MoneyOut = Field(description="Amount of this payment allocated to the invoice")


class LastProblem(BaseModel):
    reason_code: str = Field(
        description="The rejection's or failure's code (payment.rejected, payment.failed, "
        "payment.cancelled, payment.expired)"
    )
    message: str = Field(description="Text a portal may show")
    at: datetime = Field(description="When it happened (the event's occurred_at)")


class RestrictionOut(BaseModel):
    reason_code: str | None = Field(description="The merchant policy's reason, e.g. distributor_country")
    message: str | None = Field(description="Text a portal may show (e.g. whom to pay instead)")


class RefundOut(BaseModel):
    payment_id: str = Field(description="The payment whose money goes back")
    state: Literal["requested", "refunded", "failed"] = Field(
        description="requested: asked of the provider; refunded: done; failed: the provider refused"
    )
    amount: MoneyOut = Field(description="What goes back to the customer")
    reason_code: str | None = Field(description="double_payment, late_payment or amount_mismatch")
    at: datetime = Field(description="When the refund last changed")


class PartitionOffset(BaseModel):
    topic: str = Field(description="invoices or payments.events (with the deployment's prefix)")
    partition: int = Field(description="The account's partition of that topic")
    next_offset: int = Field(description="Everything before this offset is reflected")


class Freshness(BaseModel):
    version: int = Field(description="Read-model version that answered")
    event_time: datetime | None = Field(description="occurred_at of the newest event applied to this item")
    projection_event_time: datetime | None = Field(
        description="occurred_at of the newest event the whole projection applied"
    )
    offsets: list[PartitionOffset] = Field(description="The account's partitions and how far they are read")


class InvoiceOut(BaseModel):
    account_id: str = Field(description="ERP customer account id")
    invoice_number: str = Field(description="The ERP's invoice number, unique within the account")
    order_number: str | None = Field(description="The sales order the invoice bills, as the ERP sent it")
    po_number: str | None = Field(description="The customer's purchase order number, as the ERP sent it")
    invoice_date: date = Field(description="As the ERP sent it")
    due_date: date = Field(description="As the ERP sent it; the list is sorted by it")
    currency: str = Field(description="ISO 4217 code of every amount of the invoice")
    total: MoneyOut = Field(description="The invoice total as billed")
    balance: MoneyOut = Field(
        description="ERP open amount minus succeeded payments the ERP has not posted yet; never negative"
    )
    pay_status: PayStatus = Field(
        description="payable (the seed's Pay), pending (a checkout is open or a payment is "
        "processing), partially_paid, paid, not_payable (see not_payable_reason)"
    )
    not_payable_reason: NotPayableReason | None = Field(
        description="Set when pay_status is not_payable: not_registered or registration_failed "
        "(with the provider), zero_balance, cancelled or closed (in the ERP), restricted (the "
        "merchant's policy)"
    )
    pay_button: bool = Field(description="Whether the portal shows the Pay button / lets it be selected")
    pay_button_reason: str | None = Field(
        description="Why the button is hidden: provider_not_configured, pending, paid, "
        "or a not_payable reason"
    )
    current_payment: CurrentPayment | None = Field(
        description="The most recently requested payment against this invoice, whatever its state"
    )
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
    freshness: Freshness = Field(description="How fresh this answer is")


class InvoicePage(BaseModel):
    account_id: str = Field(description="ERP customer account id")
    items: list[InvoiceOut] = Field(description="Up to `limit` invoices in the order of `sort`")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")
    freshness: Freshness = Field(description="How fresh this answer is (the account as a whole)")


class CurrencyBalance(BaseModel):
    currency: str = Field(description="ISO 4217 code")
    balance: MoneyOut = Field(
        description="What the account owes in this currency: the balances of its invoices that "
        "are not cancelled or closed"
    )
    pay_button: bool = Field(
        description="Account-level PAY: the policy lets the account pay its balance, the provider is "
        "configured, the balance is above zero, and no invoice of this currency is pending or "
        "not yet sent to the provider (payment-intake would refuse the payment then)"
    )
    pay_button_reason: str | None = Field(
        None,
        description="Why this currency's PAY is hidden: provider_not_configured, zero_balance, "
        "payment_pending or not_registered (null: it shows, or the policy hides it)"
    )
    invoices: int = Field(description="Invoices of the account in this currency, whatever their status")
    by_status: dict[str, int] = Field(description="How many of them have each pay_status")


class AccountSummary(BaseModel):
    account_id: str = Field(description="ERP customer account id")
    balances: list[CurrencyBalance] = Field(description="One per currency the account has invoices in")
    pay_button: bool = Field(description="True when any currency's PAY button shows")
    pay_button_reason: str | None = Field(
        description="Why the account PAY button is hidden: the merchant policy's reason "
        "(account_balance_not_allowed), provider_not_configured, zero_balance, payment_pending "
        "or not_registered"
    )
    pay_button_message: str | None = Field(description="Text a portal may show when the policy hides it")
    freshness: Freshness = Field(description="How fresh this answer is")


class Problem404(BaseModel):
    detail: str = Field(description="What was not found, for logs (the same for another merchant's)")


class Problem401(BaseModel):
    detail: str = Field(description="Why the key was refused, for logs")


class Problem503(BaseModel):
    """RFC 9457 problem details; `Retry-After` carries the same seconds."""

    type: str = Field(
        description="urn:payments:read-model:unavailable (no database answered in time) or "
        "urn:payments:read-model:behind (none has applied the min_offset passed yet)"
    )
    title: str = Field(description="A short summary of the problem type")
    status: Literal[503] = Field(description="The HTTP status, 503")
    detail: str = Field(description="What could not answer, for logs and support")
    retry_after_s: int = Field(description="Seconds to wait before asking again (as Retry-After)")
