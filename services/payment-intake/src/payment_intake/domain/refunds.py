"""Which flagged payments get their money back, and why (pure).

A payment is refunded when the provider took money it must not keep:
- `double_payment`: money moved after we ended the payment, and another payment has
  already paid the invoice;
- `late_payment`: money moved after the checkout was cancelled or expired;
- `amount_mismatch`: the provider took another amount than we asked.
Whether that happens without an operator is the merchant policy's `auto_refund`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

RefundReason = Literal["double_payment", "late_payment", "amount_mismatch"]

MESSAGES: dict[str, str] = {
    "double_payment": "The invoice was already paid; the second payment is being refunded.",
    "late_payment": "The payment arrived after the checkout had ended; it is being refunded.",
    "amount_mismatch": "The provider took another amount than the invoice's; it is being refunded.",
}


def refund_reason(flag_code: str, *, invoice_already_paid: bool) -> RefundReason | None:
    """The refund a flag calls for, or None when the flag is not about money to return."""
    if flag_code == "amount_mismatch":
        return "amount_mismatch"
    if flag_code == "succeeded_after_end":
        return "double_payment" if invoice_already_paid else "late_payment"
    return None


class NotRefundable(Exception):
    """An operator asked to refund a payment whose money is not to be returned."""


OPEN_REFUND = ("requested", "submitted")


@dataclass(frozen=True)
class Refund:
    """Status: `requested` (to submit to the provider) -> `submitted` (the provider
    accepted it; its webhook or a status query settles it) -> `refunded` | `failed`."""

    refund_id: UUID
    payment_id: UUID
    account_id: str
    amount_minor: int
    currency: str
    reason_code: str
    requested_by: str
    status: str
    provider_refund_id: str | None
    attempts: int
    checkout_id: str | None
    updated_at: datetime
