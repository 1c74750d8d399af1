"""What the provider answers, and what those answers mean for a payment (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from payments_shared.domain.money import Money

from .payment import Happening, Payment, PaymentStatus, ProviderWord


@dataclass(frozen=True)
class OpenedCheckout:
    checkout_id: str
    url: str
    expires_at: datetime


class ProviderRefused(Exception):
    """A 4xx from the provider: it will not do it (permanent, unlike an outage)."""

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail or {}


@dataclass(frozen=True)
class CheckoutState:
    """The provider's answer to "what happened to this checkout?"."""

    checkout_id: str
    status: str  # open | processing | succeeded | failed | expired | cancelled
    amount_minor: int | None
    currency: str | None
    provider_payment_ref: str | None
    reason: str | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> CheckoutState:
        return cls(
            checkout_id=str(data["checkout_id"]),
            status=str(data["status"]),
            amount_minor=None if data.get("amount_minor") is None else int(data["amount_minor"]),
            currency=data.get("currency"),
            provider_payment_ref=data.get("provider_payment_ref"),
            reason=data.get("reason"),
        )


@dataclass(frozen=True)
class RefundState:
    refund_id: str
    provider_refund_id: str | None
    status: str  # pending | succeeded | failed
    reason: str | None


@dataclass(frozen=True)
class ClaimedCheckout:
    """A payment's checkout leased to the provider worker (status sync or cancel)."""

    payment_id: UUID
    account_id: str
    checkout_id: str
    updated_at: datetime
    attempts: int = field(compare=False)


def next_status_sync(updated_at: datetime, after_s: float, asked_again_at: datetime | None) -> datetime:
    """When status sync asks the provider about an open checkout: once the payment has
    not moved for its policy's `after_s`, and not before the time an earlier sync set
    (a threshold after a "still open", the back-off after a failure)."""
    due = updated_at + timedelta(seconds=after_s)
    return due if asked_again_at is None or asked_again_at < due else asked_again_at


def backoff_s(attempt: int) -> float:
    """Provider outages: 1 s, 2 s, 4 s ... capped at 5 minutes, so others keep flowing."""
    return min(300.0, 2.0 ** max(0, attempt - 1))


def succeeded_word(payment: Payment, state: CheckoutState) -> ProviderWord:
    amount = None
    if state.amount_minor is not None:
        amount = Money(amount_minor=state.amount_minor, currency=state.currency or payment.currency)
    return ProviderWord(
        Happening.SUCCEEDED,
        checkout_id=state.checkout_id,
        amount=amount,
        provider_payment_ref=state.provider_payment_ref,
    )


_ENDED = {"failed": Happening.FAILED, "expired": Happening.EXPIRED, "cancelled": Happening.CANCELLED}


def words_for(payment: Payment, state: CheckoutState) -> list[ProviderWord]:
    """The webhooks the provider's state stands for, in the order it would have sent them."""
    status = state.status
    if status == "succeeded":
        words = [succeeded_word(payment, state)]
        if payment.status is PaymentStatus.CHECKOUT_OPEN:
            words.insert(0, ProviderWord(Happening.PROCESSING, checkout_id=state.checkout_id))
        return words
    if status == "processing" and payment.status is PaymentStatus.CHECKOUT_OPEN:
        return [ProviderWord(Happening.PROCESSING, checkout_id=state.checkout_id)]
    if status in _ENDED:
        return [ProviderWord(_ENDED[status], checkout_id=state.checkout_id, reason=state.reason)]
    return []
