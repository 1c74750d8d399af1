"""Why a pay command is refused: a stable code for machines, a message a portal can show."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    CARD_NUMBER_IN_INPUT = "card_number_in_input"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    ACCOUNT_WITHOUT_MERCHANT = "account_without_merchant"
    UNKNOWN_ACCOUNT = "unknown_account"
    INVOICE_NOT_FOUND = "invoice_not_found"
    INVOICE_OF_ANOTHER_ACCOUNT = "invoice_of_another_account"
    DUPLICATE_INVOICE_SELECTED = "duplicate_invoice_selected"
    INVOICE_NOT_REGISTERED = "invoice_not_registered"
    INVOICE_CLOSED = "invoice_closed"
    ZERO_BALANCE = "zero_balance"
    PAYMENT_PENDING = "payment_pending"
    SEVERAL_INVOICES_NOT_ALLOWED = "several_invoices_not_allowed"
    ACCOUNT_BALANCE_NOT_ALLOWED = "account_balance_not_allowed"
    CURRENCY_REQUIRED = "currency_required"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    PARTIAL_PAYMENT_NOT_ALLOWED = "partial_payment_not_allowed"
    AMOUNT_ABOVE_BALANCE = "amount_above_balance"
    MUST_PAY_FULL_BALANCE = "must_pay_full_balance_of_each_invoice"
    PAY_THROUGH_DISTRIBUTOR = "pay_through_distributor"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_BILLING_DETAILS = "invalid_billing_details"
    OFFLINE_REMITTANCE = "offline_remittance"
    UNKNOWN_PAYMENT = "unknown_payment"
    CANNOT_CANCEL = "cannot_cancel"


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    message: str
    invoice_numbers: tuple[str, ...] = field(default=())


def _listed(numbers: tuple[str, ...]) -> str:
    return ", ".join(numbers)


# Templates of the messages the seed portals show; only the one a rejection needs is
# filled in (a rejection is half of the commands under load).
_INVOICE_MESSAGES: dict[Reason, str] = {
    Reason.INVOICE_NOT_FOUND: "{subject} could not be found.",
    Reason.INVOICE_OF_ANOTHER_ACCOUNT: "{subject} {is_} not on your account.",
    Reason.DUPLICATE_INVOICE_SELECTED: "{subject} {is_} selected more than once.",
    Reason.INVOICE_NOT_REGISTERED: (
        "{subject} {has} not been sent for payment processing yet. Please try again later."
    ),
    Reason.INVOICE_CLOSED: "{subject} {is_} closed and can no longer be paid.",
    Reason.ZERO_BALANCE: "{subject} {has} no remaining balance to pay.",
    Reason.PAYMENT_PENDING: "A payment against {object} is already pending.",
    Reason.CURRENCY_MISMATCH: "The payment currency does not match {object}.",
    Reason.AMOUNT_NOT_POSITIVE: "The payment amount must be greater than zero.",
    Reason.PARTIAL_PAYMENT_NOT_ALLOWED: (
        "Only full invoice payments are supported: the amount must equal the balance due."
    ),
    Reason.AMOUNT_ABOVE_BALANCE: "You cannot pay an amount above the total amount due of {object}.",
    Reason.MUST_PAY_FULL_BALANCE: (
        "When you pay several invoices at once you must pay the total balance due of each"
        " selected invoice ({listed})."
    ),
}


def invoices_rejection(reason: Reason, numbers: tuple[str, ...]) -> Rejection:
    """The messages the seed portals show, for the invoices that failed one check."""
    one = len(numbers) == 1
    subject = f"Invoice {numbers[0]}" if one else f"Invoices {_listed(numbers)}"
    message = _INVOICE_MESSAGES[reason].format(
        subject=subject,
        # Mid-sentence: lower-case the word, never the invoice numbers themselves.
        object=subject[0].lower() + subject[1:],
        has="has" if one else "have",
        is_="is" if one else "are",
        listed=_listed(numbers),
    )
    return Rejection(reason, message, numbers)
