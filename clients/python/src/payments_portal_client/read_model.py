"""Generated from contracts/openapi/status-projector.json by `make contracts`; do not edit."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class BankTransferDetails(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
    )
    account_name: Annotated[
        str,
        Field(
            description="The beneficiary: the merchant's account holder name",
            title='Account Name',
        ),
    ]
    account_number: Annotated[
        str,
        Field(
            description="The beneficiary's account number at that bank",
            title='Account Number',
        ),
    ]
    bank_name: Annotated[
        str, Field(description="The beneficiary's bank", title='Bank Name')
    ]
    iban: Annotated[
        str | None, Field(description='IBAN, where the bank has one', title='Iban')
    ] = None
    routing_number: Annotated[
        str | None,
        Field(
            description='ABA routing number (US ACH and domestic wires)',
            title='Routing Number',
        ),
    ] = None
    swift_bic: Annotated[
        str | None,
        Field(description='SWIFT/BIC for international wires', title='Swift Bic'),
    ] = None


class LastProblem(BaseModel):
    at: Annotated[
        AwareDatetime,
        Field(description="When it happened (the event's occurred_at)", title='At'),
    ]
    message: Annotated[
        str, Field(description='Text a portal may show', title='Message')
    ]
    reason_code: Annotated[
        str,
        Field(
            description="The rejection's or failure's code (payment.rejected, payment.failed, payment.cancelled, payment.expired)",
            title='Reason Code',
        ),
    ]


class MailingAddress(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
    )
    city: Annotated[str, Field(description='City', title='City')]
    country: Annotated[
        str,
        Field(description='ISO 3166-1 alpha-2', pattern='^[A-Z]{2}$', title='Country'),
    ]
    line1: Annotated[str, Field(description='Street address or PO box', title='Line1')]
    line2: Annotated[
        str | None, Field(description='Suite, floor, attention line', title='Line2')
    ] = None
    name: Annotated[
        str,
        Field(
            description="Addressee line, e.g. 'Acme Corp, Accounts Receivable'",
            title='Name',
        ),
    ]
    postal_code: Annotated[
        str, Field(description='ZIP or postal code', title='Postal Code')
    ]
    region: Annotated[
        str | None, Field(description='State or province', title='Region')
    ] = None


class MoneyOut(BaseModel):
    amount_minor: Annotated[
        int,
        Field(
            description="Integer amount in the currency's minor unit",
            title='Amount Minor',
        ),
    ]
    currency: Annotated[str, Field(description='ISO 4217 code', title='Currency')]


class NotPayableReason(StrEnum):
    not_registered = 'not_registered'
    registration_failed = 'registration_failed'
    zero_balance = 'zero_balance'
    cancelled = 'cancelled'
    closed = 'closed'
    restricted = 'restricted'


class PartitionOffset(BaseModel):
    next_offset: Annotated[
        int,
        Field(
            description='Everything before this offset is reflected',
            title='Next Offset',
        ),
    ]
    partition: Annotated[
        int,
        Field(description="The account's partition of that topic", title='Partition'),
    ]
    topic: Annotated[
        str,
        Field(
            description="invoices or payments.events (with the deployment's prefix)",
            title='Topic',
        ),
    ]


class PayStatus(StrEnum):
    payable = 'payable'
    pending = 'pending'
    partially_paid = 'partially_paid'
    paid = 'paid'
    not_payable = 'not_payable'


class PaymentState(StrEnum):
    requested = 'requested'
    checkout_open = 'checkout_open'
    processing = 'processing'
    succeeded = 'succeeded'
    failed = 'failed'
    cancelled = 'cancelled'
    expired = 'expired'


class Problem401(BaseModel):
    detail: Annotated[
        str, Field(description='Why the key was refused, for logs', title='Detail')
    ]


class Problem404(BaseModel):
    detail: Annotated[
        str,
        Field(
            description="What was not found, for logs (the same for another merchant's)",
            title='Detail',
        ),
    ]


class Problem503(BaseModel):
    detail: Annotated[
        str,
        Field(
            description='What could not answer, for logs and support', title='Detail'
        ),
    ]
    retry_after_s: Annotated[
        int,
        Field(
            description='Seconds to wait before asking again (as Retry-After)',
            title='Retry After S',
        ),
    ]
    status: Annotated[
        Literal[503], Field(description='The HTTP status, 503', title='Status')
    ]
    title: Annotated[
        str, Field(description='A short summary of the problem type', title='Title')
    ]
    type: Annotated[
        str,
        Field(
            description='urn:payments:read-model:unavailable (no database answered in time) or urn:payments:read-model:behind (none has applied the min_offset passed yet)',
            title='Type',
        ),
    ]


class State(StrEnum):
    requested = 'requested'
    refunded = 'refunded'
    failed = 'failed'


class RefundOut(BaseModel):
    amount: Annotated[MoneyOut, Field(description='What goes back to the customer')]
    at: Annotated[
        AwareDatetime, Field(description='When the refund last changed', title='At')
    ]
    payment_id: Annotated[
        str, Field(description='The payment whose money goes back', title='Payment Id')
    ]
    reason_code: Annotated[
        str | None,
        Field(
            description='double_payment, late_payment or amount_mismatch',
            title='Reason Code',
        ),
    ]
    state: Annotated[
        State,
        Field(
            description='requested: asked of the provider; refunded: done; failed: the provider refused',
            title='State',
        ),
    ]


class RestrictionOut(BaseModel):
    message: Annotated[
        str | None,
        Field(
            description='Text a portal may show (e.g. whom to pay instead)',
            title='Message',
        ),
    ]
    reason_code: Annotated[
        str | None,
        Field(
            description="The merchant policy's reason, e.g. distributor_country",
            title='Reason Code',
        ),
    ]


class ValidationError(BaseModel):
    ctx: Annotated[dict[str, Any] | None, Field(title='Context')] = None
    input: Annotated[Any | None, Field(title='Input')] = None
    loc: Annotated[list[str | int], Field(title='Location')]
    msg: Annotated[str, Field(title='Message')]
    type: Annotated[str, Field(title='Error Type')]


class CheckDetails(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
    )
    mailing_address: Annotated[
        MailingAddress | None,
        Field(
            description='Where to mail the check; absent only when the merchant configured none'
        ),
    ] = None
    payee: Annotated[str, Field(description='Make the check payable to', title='Payee')]


class CurrencyBalance(BaseModel):
    balance: Annotated[
        MoneyOut,
        Field(
            description='What the account owes in this currency: the balances of its invoices that are not cancelled or closed'
        ),
    ]
    by_status: Annotated[
        dict[str, int],
        Field(description='How many of them have each pay_status', title='By Status'),
    ]
    currency: Annotated[str, Field(description='ISO 4217 code', title='Currency')]
    invoices: Annotated[
        int,
        Field(
            description='Invoices of the account in this currency, whatever their status',
            title='Invoices',
        ),
    ]
    pay_button: Annotated[
        bool,
        Field(
            description='Account-level PAY: the policy lets the account pay its balance, the provider is configured, the balance is above zero, and no invoice of this currency is pending or not yet sent to the provider (payment-intake would refuse the payment then)',
            title='Pay Button',
        ),
    ]
    pay_button_reason: Annotated[
        str | None,
        Field(
            description="Why this currency's PAY is hidden: provider_not_configured, zero_balance, payment_pending or not_registered (null: it shows, or the policy hides it)",
            title='Pay Button Reason',
        ),
    ] = None


class CurrentPayment(BaseModel):
    amount: Annotated[
        MoneyOut, Field(description='Amount of this payment allocated to the invoice')
    ]
    payment_id: Annotated[
        str,
        Field(
            description='Our payment id (the `payment_id` of its payments.events)',
            title='Payment Id',
        ),
    ]
    state: Annotated[
        PaymentState,
        Field(
            description='requested, checkout_opened or processing (the invoice is pending); succeeded; failed, cancelled or expired (the invoice is payable again)'
        ),
    ]


class Freshness(BaseModel):
    event_time: Annotated[
        AwareDatetime | None,
        Field(
            description='occurred_at of the newest event applied to this item',
            title='Event Time',
        ),
    ]
    offsets: Annotated[
        list[PartitionOffset],
        Field(
            description="The account's partitions and how far they are read",
            title='Offsets',
        ),
    ]
    projection_event_time: Annotated[
        AwareDatetime | None,
        Field(
            description='occurred_at of the newest event the whole projection applied',
            title='Projection Event Time',
        ),
    ]
    version: Annotated[
        int, Field(description='Read-model version that answered', title='Version')
    ]


class HTTPValidationError(BaseModel):
    detail: Annotated[list[ValidationError] | None, Field(title='Detail')] = None


class InvoiceOut(BaseModel):
    account_id: Annotated[
        str, Field(description='ERP customer account id', title='Account Id')
    ]
    balance: Annotated[
        MoneyOut,
        Field(
            description='ERP open amount minus succeeded payments the ERP has not posted yet; never negative'
        ),
    ]
    currency: Annotated[
        str,
        Field(
            description='ISO 4217 code of every amount of the invoice', title='Currency'
        ),
    ]
    current_payment: Annotated[
        CurrentPayment | None,
        Field(
            description='The most recently requested payment against this invoice, whatever its state'
        ),
    ]
    due_date: Annotated[
        date,
        Field(
            description='As the ERP sent it; the list is sorted by it', title='Due Date'
        ),
    ]
    freshness: Annotated[Freshness, Field(description='How fresh this answer is')]
    invoice_date: Annotated[
        date, Field(description='As the ERP sent it', title='Invoice Date')
    ]
    invoice_number: Annotated[
        str,
        Field(
            description="The ERP's invoice number, unique within the account",
            title='Invoice Number',
        ),
    ]
    last_problem: Annotated[
        LastProblem | None, Field(description='Last rejection or failure')
    ]
    not_payable_reason: Annotated[
        NotPayableReason | None,
        Field(
            description="Set when pay_status is not_payable: not_registered or registration_failed (with the provider), zero_balance, cancelled or closed (in the ERP), restricted (the merchant's policy)"
        ),
    ]
    order_number: Annotated[
        str | None,
        Field(
            description='The sales order the invoice bills, as the ERP sent it',
            title='Order Number',
        ),
    ]
    pay_button: Annotated[
        bool,
        Field(
            description='Whether the portal shows the Pay button / lets it be selected',
            title='Pay Button',
        ),
    ]
    pay_button_reason: Annotated[
        str | None,
        Field(
            description='Why the button is hidden: provider_not_configured, pending, paid, or a not_payable reason',
            title='Pay Button Reason',
        ),
    ]
    pay_status: Annotated[
        PayStatus,
        Field(
            description="payable (the seed's Pay), pending (a checkout is open or a payment is processing), partially_paid, paid, not_payable (see not_payable_reason)"
        ),
    ]
    po_number: Annotated[
        str | None,
        Field(
            description="The customer's purchase order number, as the ERP sent it",
            title='Po Number',
        ),
    ]
    refund: Annotated[
        RefundOut | None,
        Field(
            description='The latest refund of money taken for this invoice that it must not keep (paid late, twice, or in another amount). The balance does not change: that money was never counted as paid.'
        ),
    ]
    restriction: Annotated[
        RestrictionOut | None,
        Field(
            description="Set while the merchant's policy does not let this invoice be paid online (pay_status not_payable, reason restricted)"
        ),
    ]
    total: Annotated[MoneyOut, Field(description='The invoice total as billed')]


class InvoicePage(BaseModel):
    account_id: Annotated[
        str, Field(description='ERP customer account id', title='Account Id')
    ]
    freshness: Annotated[
        Freshness,
        Field(description='How fresh this answer is (the account as a whole)'),
    ]
    items: Annotated[
        list[InvoiceOut],
        Field(
            description='Up to `limit` invoices in the order of `sort`', title='Items'
        ),
    ]
    next_cursor: Annotated[
        str | None,
        Field(
            description='Pass as `cursor` for the next page; null on the last',
            title='Next Cursor',
        ),
    ]


class RemittanceDetails(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
    )
    ach: Annotated[
        BankTransferDetails | None, Field(description='Pay by ACH transfer (US)')
    ] = None
    check: Annotated[
        CheckDetails | None,
        Field(description='Pay by check: payee and mailing address'),
    ] = None
    wire: Annotated[
        BankTransferDetails | None, Field(description='Pay by wire transfer')
    ] = None


class AccountRemittance(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
    )
    account_id: Annotated[
        str, Field(description='ERP customer account id', title='Account Id')
    ]
    details: Annotated[
        RemittanceDetails,
        Field(description="Each channel the account's merchant accepts"),
    ]
    reference: Annotated[
        str,
        Field(
            description='Quote this with every remittance: the account id; add the invoice numbers paid',
            title='Reference',
        ),
    ]


class AccountSummary(BaseModel):
    account_id: Annotated[
        str, Field(description='ERP customer account id', title='Account Id')
    ]
    balances: Annotated[
        list[CurrencyBalance],
        Field(
            description='One per currency the account has invoices in', title='Balances'
        ),
    ]
    freshness: Annotated[Freshness, Field(description='How fresh this answer is')]
    pay_button: Annotated[
        bool,
        Field(
            description="True when any currency's PAY button shows", title='Pay Button'
        ),
    ]
    pay_button_message: Annotated[
        str | None,
        Field(
            description='Text a portal may show when the policy hides it',
            title='Pay Button Message',
        ),
    ]
    pay_button_reason: Annotated[
        str | None,
        Field(
            description="Why the account PAY button is hidden: the merchant policy's reason (account_balance_not_allowed), provider_not_configured, zero_balance, payment_pending or not_registered",
            title='Pay Button Reason',
        ),
    ]
