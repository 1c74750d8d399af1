"""Stable reason codes, one enum per event, each code with the message it carries.

A code is for machines (a portal branches on it); the event's `message` is for people
and may name invoices or amounts. The JSON Schema of each enum lists every code as a
`const` with a description of when it is sent and the message that goes with it.
Codes are only ever added: events are kept forever and rebuilds read old ones.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class ReasonCode(StrEnum):
    """A code with the message it carries (`member.message`)."""

    message: str

    def __new__(cls, value: str, message: str = "") -> ReasonCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.message = message
        return member

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {
            "type": "string",
            "title": cls.__name__,
            "description": " ".join((cls.__doc__ or "").split()),
            "oneOf": [{"const": m.value, "description": m.message} for m in cls],
        }

    @classmethod
    def table(cls) -> dict[str, str]:
        return {m.value: m.message for m in cls}


class RejectionReason(ReasonCode):
    """Why `payment.rejected` refused a pay or cancel command. Checked in this order: account
    known and owned by a merchant, invoices belong to it, registered with the provider, open
    with a balance, no payment pending, amount rules of the merchant's policy, country
    restriction, method allowed."""

    CARD_NUMBER_IN_INPUT = (
        "card_number_in_input",
        "A field held something that looks like a card number (never stored or echoed): "
        "'A card number was entered outside the secure card form. ...'",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        "Same idempotency key, different content: 'This request was already submitted with "
        "different details. Start a new payment instead.'",
    )
    ACCOUNT_WITHOUT_MERCHANT = (
        "account_without_merchant",
        "The merchant file lists the account under no merchant and names no `default` "
        "policy: 'This account is not set up for online payment. Please contact us.'",
    )
    UNKNOWN_ACCOUNT = (
        "unknown_account",
        "No invoice of the account is known (the ERP has sent none): "
        "'We could not find your customer account.'",
    )
    INVOICE_NOT_FOUND = ("invoice_not_found", "'Invoice <n> could not be found.'")
    INVOICE_OF_ANOTHER_ACCOUNT = ("invoice_of_another_account", "'Invoice <n> is not on your account.'")
    DUPLICATE_INVOICE_SELECTED = (
        "duplicate_invoice_selected",
        "'Invoice <n> is selected more than once.'",
    )
    INVOICE_NOT_REGISTERED = (
        "invoice_not_registered",
        "Not yet registered with the provider: 'Invoice <n> has not been sent for payment "
        "processing yet. Please try again later.'",
    )
    INVOICE_CLOSED = ("invoice_closed", "'Invoice <n> is closed and can no longer be paid.'")
    ZERO_BALANCE = (
        "zero_balance",
        "'Invoice <n> has no remaining balance to pay.' or 'Your account has no balance to pay.'",
    )
    PAYMENT_PENDING = ("payment_pending", "'A payment against invoice <n> is already pending.'")
    SEVERAL_INVOICES_NOT_ALLOWED = (
        "several_invoices_not_allowed",
        "'Selecting several invoices for one payment is not available: pay one invoice at a time.'",
    )
    ACCOUNT_BALANCE_NOT_ALLOWED = (
        "account_balance_not_allowed",
        "'Paying the whole account balance is not available: select the invoices to pay.'",
    )
    CURRENCY_REQUIRED = (
        "currency_required",
        "'Your account has balances in several currencies: choose which one to pay.'",
    )
    CURRENCY_MISMATCH = ("currency_mismatch", "'The payment currency does not match invoice <n>.'")
    AMOUNT_NOT_POSITIVE = ("amount_not_positive", "'The payment amount must be greater than zero.'")
    PARTIAL_PAYMENT_NOT_ALLOWED = (
        "partial_payment_not_allowed",
        "'Only full invoice payments are supported: the amount must equal the balance due.'",
    )
    AMOUNT_ABOVE_BALANCE = (
        "amount_above_balance",
        "'You cannot pay an amount above the total amount due of invoice <n>.'",
    )
    MUST_PAY_FULL_BALANCE = (
        "must_pay_full_balance_of_each_invoice",
        "'When you pay several invoices at once you must pay the total balance due of each "
        "selected invoice (<n>, ...).'",
    )
    PAY_THROUGH_DISTRIBUTOR = (
        "pay_through_distributor",
        "The invoice's billing country pays through a distributor: 'Customers in your country "
        "pay their invoices through their distributor. ...'",
    )
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        "'This payment method is not available here. Available: <methods>.'",
    )
    INVALID_BILLING_DETAILS = (
        "invalid_billing_details",
        "'Enter your billing address.' or what is wrong with each field, then '(fields: ...)'",
    )
    OFFLINE_REMITTANCE = (
        "offline_remittance",
        "Not sent any more (kept so that old events still validate): remittance is answered "
        "by `payment.remittance_instructions`.",
    )
    UNKNOWN_PAYMENT = ("unknown_payment", "cancel_checkout: 'We could not find this payment.'")
    CANNOT_CANCEL = (
        "cannot_cancel",
        "cancel_checkout: 'This payment can no longer be cancelled: it is <status>.'",
    )


class PaymentEndReason(ReasonCode):
    """Why a payment ended without money kept: on `payment.failed`, `payment.cancelled` and
    `payment.expired`. The message is the state's sentence, with the provider's detail in
    brackets when it gave one."""

    PAYMENT_FAILED = ("payment_failed", "payment.failed: the provider reported the payment failed.")
    UNKNOWN_AT_PROVIDER = (
        "unknown_at_provider",
        "payment.failed: status sync found no such checkout at the provider.",
    )
    CHECKOUT_REFUSED = (
        "checkout_refused",
        "payment.failed: the provider refused to open the checkout (its reason in brackets).",
    )
    FAILED = ("failed", "payment.failed: ended as failed without a more precise code.")
    DOUBLE_PAYMENT_REFUNDED = (
        "double_payment_refunded",
        "payment.failed: a payment held for an operator was refunded (double payment).",
    )
    LATE_PAYMENT_REFUNDED = (
        "late_payment_refunded",
        "payment.failed: a payment held for an operator was refunded (late payment).",
    )
    AMOUNT_MISMATCH_REFUNDED = (
        "amount_mismatch_refunded",
        "payment.failed: the provider took another amount than asked; it was refunded.",
    )
    CUSTOMER_CANCELLED = (
        "customer_cancelled",
        "payment.cancelled: 'The checkout was cancelled. The invoice can be paid again.'",
    )
    CHECKOUT_CANCELLED = (
        "checkout_cancelled",
        "payment.cancelled: the provider reported the checkout cancelled.",
    )
    CANCELLED = ("cancelled", "payment.cancelled: ended as cancelled without a more precise code.")
    CHECKOUT_EXPIRED = (
        "checkout_expired",
        "payment.expired: the checkout's time ran out (our timer or the provider's word).",
    )
    EXPIRED = ("expired", "payment.expired: ended as expired without a more precise code.")


class FlagReason(ReasonCode):
    """Why `payment.flagged` asks an operator to look; the payment's outcome did not change."""

    AMOUNT_MISMATCH = (
        "amount_mismatch",
        "'The provider confirmed <amount> ... for a payment of <amount>.' (held; refunded when "
        "the policy says so)",
    )
    SUCCEEDED_AFTER_END = (
        "succeeded_after_end",
        "'The provider reports money moved for a payment that is <status>: refund or reconcile it.'",
    )
    CALLBACK_UNKNOWN_PAYMENT = (
        "callback_unknown_payment",
        "'A provider callback (<event>) names a payment we do not know ...'",
    )
    CALLBACK_ACCOUNT_MISMATCH = (
        "callback_account_mismatch",
        "'A provider callback (<event>) names a payment of another account ...'",
    )
    CALLBACK_UNKNOWN_REFUND = (
        "callback_unknown_refund",
        "'A provider callback (<event>) names a refund we did not ask for.'",
    )


class RestrictionReason(ReasonCode):
    """Why `payment.invoice_restriction_changed` says an invoice cannot be paid online."""

    PAY_THROUGH_DISTRIBUTOR = (
        "pay_through_distributor",
        "'Customers in your country pay their invoices through their distributor. ...'",
    )


class AccountBalanceReason(ReasonCode):
    """Why `payment.account_balance_payment_changed` hides the account-level PAY button."""

    ACCOUNT_BALANCE_NOT_ALLOWED = (
        "account_balance_not_allowed",
        "'Paying the whole account balance is not available: select the invoices to pay.'",
    )

