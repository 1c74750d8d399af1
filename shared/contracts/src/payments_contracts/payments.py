"""Pay commands from portal backends, provider callbacks, and payment outcomes.

Commands are structurally typed only: what a customer typed (billing address,
amounts) is judged by payment-intake's policy so that a bad value becomes a
rejection the portal can show, not a dead letter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from payments_contracts.money import Money

from .envelope import Envelope, InvoiceNumber, Payload
from .reasons import AccountBalanceReason, FlagReason, PaymentEndReason, RejectionReason, RestrictionReason
from .remittance import RemittanceChannel, RemittanceDetails

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=128)]

# --- payment methods -------------------------------------------------------------


class BillingAddress(Payload):
    email: str
    street: str
    address_line2: str | None = None
    country: str
    postal_code: str
    phone_country_code: str
    phone_number: str


class GuestCheckout(Payload):
    """Card on the provider's hosted form, without a payer-portal login (seed 000)."""

    kind: Literal["guest_checkout"] = "guest_checkout"
    billing_address: BillingAddress
    name_on_card: str


class PayerPortal(Payload):
    """The provider's payer portal: saved methods, payment history (seed 000)."""

    kind: Literal["payer_portal"] = "payer_portal"


class CardOnline(Payload):
    """Card on the provider's hosted form (seed 003)."""

    kind: Literal["card"] = "card"
    name_on_card: str | None = None
    billing_address: BillingAddress | None = None


class Remittance(Payload):
    """Pay offline: we answer with remittance details (seed 003)."""

    kind: Literal["remittance"] = "remittance"
    channel: RemittanceChannel


PaymentMethod = Annotated[GuestCheckout | PayerPortal | CardOnline | Remittance, Field(discriminator="kind")]

# --- commands on payments.commands -----------------------------------------------


class PayInvoicePayload(Payload):
    idempotency_key: IdempotencyKey
    invoice_number: InvoiceNumber
    amount: Money | None = Field(default=None, description="Omitted means the invoice's whole balance")
    method: PaymentMethod


class SelectedInvoice(Payload):
    invoice_number: InvoiceNumber
    amount: Money | None = None


class PaySelectedInvoicesPayload(Payload):
    idempotency_key: IdempotencyKey
    invoices: list[SelectedInvoice] = Field(min_length=1)
    method: PaymentMethod


class PayAccountBalancePayload(Payload):
    idempotency_key: IdempotencyKey
    currency: str | None = None
    method: PaymentMethod


class CancelCheckoutPayload(Payload):
    idempotency_key: IdempotencyKey
    payment_id: UUID


ONE_ANSWER = (
    "Every pay command is answered by exactly one of payment.requested, payment.rejected or "
    "payment.remittance_instructions (cancel_checkout: payment.cancelled or payment.rejected), "
    "with causation_id = the command's event_id and correlation_id = the command's "
    "correlation_id (set it to the command's own event_id). Later events of the payment "
    "(checkout_opened, processing, succeeded, ...) carry the same correlation_id. A repeat of the "
    "command (same idempotency key and content) is answered again, with `repeat_of` set."
)


class PayInvoice(Envelope):
    __doc__ = ONE_ANSWER

    type: Literal["payment.pay_invoice"] = "payment.pay_invoice"
    payload: PayInvoicePayload


class PaySelectedInvoices(Envelope):
    __doc__ = ONE_ANSWER

    type: Literal["payment.pay_selected_invoices"] = "payment.pay_selected_invoices"
    payload: PaySelectedInvoicesPayload


class PayAccountBalance(Envelope):
    __doc__ = ONE_ANSWER

    type: Literal["payment.pay_account_balance"] = "payment.pay_account_balance"
    payload: PayAccountBalancePayload


class CancelCheckout(Envelope):
    __doc__ = ONE_ANSWER

    type: Literal["payment.cancel_checkout"] = "payment.cancel_checkout"
    payload: CancelCheckoutPayload


PaymentCommand = Annotated[
    PayInvoice | PaySelectedInvoices | PayAccountBalance | CancelCheckout,
    Field(discriminator="type"),
]

# --- provider callbacks on payments.callbacks --------------------------------------

ProviderEvent = Literal[
    "payment.processing",
    "payment.succeeded",
    "payment.failed",
    "checkout.expired",
    "checkout.cancelled",
    "refund.succeeded",
    "refund.failed",
]


class ProviderCallbackPayload(Payload):
    """A verified provider webhook, as received. `webhook_id` is its dedupe key."""

    webhook_id: str
    provider_event: ProviderEvent
    payment_id: UUID
    checkout_id: str
    amount: Money | None = None
    provider_payment_ref: str | None = None
    reason: str | None = None
    refund_id: UUID | None = Field(default=None, description="Our refund id, on refund.* events")
    provider_occurred_at: datetime


class ProviderCallbackReceived(Envelope):
    type: Literal["provider.callback_received"] = "provider.callback_received"
    payload: ProviderCallbackPayload


ProviderCallback = Annotated[ProviderCallbackReceived, Field(discriminator="type")]

# --- outcomes on payments.events ----------------------------------------------------


class Allocation(Payload):
    invoice_number: InvoiceNumber
    amount: Money


class PaymentRequestedPayload(Payload):
    payment_id: UUID
    idempotency_key: IdempotencyKey
    scope: Literal["invoice", "selected_invoices", "account_balance"]
    method: Literal["guest_checkout", "payer_portal", "card", "remittance"]
    allocations: list[Allocation]
    total: Money
    repeat_of: UUID | None = Field(
        default=None,
        description="Set on the answer to a repeated command (same idempotency key and content):"
        " the event_id of the first answer, whose outcome this repeats. No new effect.",
    )


class PaymentRejectedPayload(Payload):
    idempotency_key: IdempotencyKey
    command_type: str = Field(description="The `type` of the command refused")
    reason_code: RejectionReason
    message: str = Field(description="What a portal shows the customer (see reason_code)")
    invoice_numbers: list[InvoiceNumber] = Field(default_factory=list)
    repeat_of: UUID | None = Field(
        default=None,
        description="Set on the answer to a repeated command (same idempotency key and content):"
        " the event_id of the first answer, whose outcome this repeats. No new effect.",
    )


class CheckoutOpenedPayload(Payload):
    """The provider's hosted checkout (or payer-portal page) for a requested payment.

    Not an answer to the command: its causation_id is the command's event_id too (the
    checkout is opened for that command, after payment.requested), so a portal that
    waits for "the answer" to a command takes the first payment.requested,
    payment.rejected or payment.remittance_instructions with that causation_id and
    treats checkout_opened as the next step of the payment named by payment_id.
    """

    payment_id: UUID
    checkout_id: str
    checkout_url: str
    expires_at: datetime


class PaymentProcessingPayload(Payload):
    payment_id: UUID


class PaymentSucceededPayload(Payload):
    payment_id: UUID = Field(
        description="When the ERP posts this money, it lists it in `posted_payments` with "
        "`reference` = this payment_id, so the read model never subtracts it twice."
    )
    amount: Money
    allocations: list[Allocation]
    provider_payment_ref: str | None = None


class PaymentEndedPayload(Payload):
    """A payment that ended without money moving: failed, cancelled or expired. Its
    invoices are payable again."""

    payment_id: UUID
    reason_code: PaymentEndReason
    message: str


class PaymentFlaggedPayload(Payload):
    """Something an operator must look at; the payment's outcome did not change."""

    payment_id: UUID | None
    reason_code: FlagReason
    message: str


class InvoiceRestrictionChangedPayload(Payload):
    """Whether the merchant's policy lets this invoice be paid online at all.

    Published by payment-intake, which owns the policy, when an invoice's restriction
    starts or ends (e.g. its billing country must pay through a distributor), so the
    read model can show it as not payable without knowing the policy itself.
    """

    invoice_number: InvoiceNumber
    restricted: bool
    reason_code: RestrictionReason | None = Field(None, description="Set when restricted")
    message: str | None = Field(None, description="Set when restricted: what a portal shows")


RefundReason = Literal["double_payment", "late_payment", "amount_mismatch"]


class RefundRequestedPayload(Payload):
    """Money the provider took for a payment that must not keep it is being returned.

    `reason_code`: `double_payment` (the invoice was already paid by another payment),
    `late_payment` (money moved after the checkout was cancelled or expired) or
    `amount_mismatch` (the provider took another amount than we asked). The invoice's
    balance does not change: such money was never counted as paid.
    """

    payment_id: UUID
    refund_id: UUID = Field(description="Our id for the refund; the provider's idempotency key")
    amount: Money
    invoice_numbers: list[InvoiceNumber]
    reason_code: RefundReason
    message: str
    requested_by: Literal["policy", "ops"] = Field(
        description="policy: refunded automatically as the merchant policy says; ops: by an operator"
    )


class RefundedPayload(Payload):
    payment_id: UUID
    refund_id: UUID
    amount: Money
    invoice_numbers: list[InvoiceNumber]
    provider_refund_id: str | None = None


class RefundFailedPayload(Payload):
    payment_id: UUID
    refund_id: UUID
    amount: Money
    invoice_numbers: list[InvoiceNumber]
    reason_code: str = Field(
        description="The provider's own code for the refusal, passed through (the sandbox "
        "provider sends `refund_declined`), else `refund_failed`. An operator follows up."
    )
    message: str = Field(description="'The provider did not refund the payment; an operator will follow up.'")


class AccountBalancePaymentChangedPayload(Payload):
    """Whether the merchant's policy lets this account pay its whole balance online (the
    account-level PAY button). Published by payment-intake, which owns the policy, when
    an account is first seen and whenever the answer changes."""

    allowed: bool
    reason_code: AccountBalanceReason | None = Field(None, description="Set when not allowed")
    message: str | None = Field(None, description="Set when not allowed: what a portal shows")


class RemittanceInstructionsPayload(Payload):
    """The answer to a pay command with method `remittance` (check, ACH or wire): what to pay,
    to whom and how, from the merchant's configuration. No payment is opened; the invoice
    stays payable until the ERP posts the money it receives (on `erp.invoices`)."""

    idempotency_key: IdempotencyKey
    command_type: str = Field(description="The `type` of the command answered")
    channel: RemittanceChannel = Field(description="The channel the customer chose")
    amount: Money = Field(description="What to pay: the sum of the allocations")
    allocations: list[Allocation]
    reference: str = Field(description="What the customer quotes with the remittance")
    details: RemittanceDetails = Field(
        description="Every channel the merchant accepts (merchant file, `remittance`). When the merchant "
        "file gives no details for the merchant, only `check` with the policy's payee: the message then "
        "tells the customer to ask the payee for bank details"
    )
    message: str = Field(description="The instructions for the chosen channel as one text a portal can show")
    repeat_of: UUID | None = Field(
        default=None,
        description="Set on the answer to a repeated command (same idempotency key and content):"
        " the event_id of the first answer, whose outcome this repeats. No new effect.",
    )


class PaymentRequested(Envelope):
    type: Literal["payment.requested"] = "payment.requested"
    payload: PaymentRequestedPayload


class PaymentRejected(Envelope):
    type: Literal["payment.rejected"] = "payment.rejected"
    payload: PaymentRejectedPayload


class RemittanceInstructions(Envelope):
    type: Literal["payment.remittance_instructions"] = "payment.remittance_instructions"
    payload: RemittanceInstructionsPayload


class CheckoutOpened(Envelope):
    type: Literal["payment.checkout_opened"] = "payment.checkout_opened"
    payload: CheckoutOpenedPayload


class PaymentProcessing(Envelope):
    type: Literal["payment.processing"] = "payment.processing"
    payload: PaymentProcessingPayload


class PaymentSucceeded(Envelope):
    type: Literal["payment.succeeded"] = "payment.succeeded"
    payload: PaymentSucceededPayload


class PaymentFailed(Envelope):
    type: Literal["payment.failed"] = "payment.failed"
    payload: PaymentEndedPayload


class PaymentCancelled(Envelope):
    type: Literal["payment.cancelled"] = "payment.cancelled"
    payload: PaymentEndedPayload


class PaymentExpired(Envelope):
    type: Literal["payment.expired"] = "payment.expired"
    payload: PaymentEndedPayload


class PaymentFlagged(Envelope):
    type: Literal["payment.flagged"] = "payment.flagged"
    payload: PaymentFlaggedPayload


class InvoiceRestrictionChanged(Envelope):
    type: Literal["payment.invoice_restriction_changed"] = "payment.invoice_restriction_changed"
    payload: InvoiceRestrictionChangedPayload


class PaymentRefundRequested(Envelope):
    type: Literal["payment.refund_requested"] = "payment.refund_requested"
    payload: RefundRequestedPayload


class PaymentRefunded(Envelope):
    type: Literal["payment.refunded"] = "payment.refunded"
    payload: RefundedPayload


class PaymentRefundFailed(Envelope):
    type: Literal["payment.refund_failed"] = "payment.refund_failed"
    payload: RefundFailedPayload


class AccountBalancePaymentChanged(Envelope):
    type: Literal["payment.account_balance_payment_changed"] = "payment.account_balance_payment_changed"
    payload: AccountBalancePaymentChangedPayload


PaymentEvent = Annotated[
    PaymentRequested
    | PaymentRejected
    | CheckoutOpened
    | PaymentProcessing
    | PaymentSucceeded
    | PaymentFailed
    | PaymentCancelled
    | PaymentExpired
    | PaymentFlagged
    | InvoiceRestrictionChanged
    | PaymentRefundRequested
    | PaymentRefunded
    | PaymentRefundFailed
    | AccountBalancePaymentChanged
    | RemittanceInstructions,
    Field(discriminator="type"),
]
