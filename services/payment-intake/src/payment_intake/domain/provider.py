"""The provider port, what the provider answers, and what those answers mean for a
payment (pure).

One port, one connector per provider (adapters: the sandbox's `provider.py`, Stripe's
`stripe_checkouts.py`; `providers.py` picks a merchant's). Its flows are the ones every
hosted-payments integration has (Hyperswitch names them authorize, payment sync, void,
refund, refund sync, webhook source verification and event mapping; Kill Bill's payment
plugins buildFormDescriptor, getPaymentInfo, voidPayment, refundPayment,
processNotification), cut to what this system does: we never see a card, so "authorize"
is opening the provider's hosted page for a payment, and a void is closing that page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from payments_contracts.money import Money

from .payment import Happening, Payment, PaymentStatus, ProviderWord
from .refunds import Refund


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


class ProviderPort(Protocol):
    """What payment-intake asks a payment provider. A connector raises `ProviderRefused`
    when the provider says no for good, and a TransientError (payments_platform) when it
    cannot answer now: the worker asks again later.

    Every call that creates or moves money is idempotent at the provider by our own id
    (the payment's, the refund's): a retry after a crash is the same request, never a
    second checkout or a second refund.
    """

    async def open_checkout(self, payment: Payment) -> OpenedCheckout:
        """The hosted page that takes the payment (guest checkout, card, or the payer
        portal for the account's payer), amount and invoices fixed by us."""

    async def checkout_state(self, checkout: ClaimedCheckout) -> CheckoutState:
        """Status sync; ProviderRefused `unknown_checkout` when the provider does not know it."""

    async def cancel_checkout(self, checkout: ClaimedCheckout) -> CheckoutState:
        """Close the page so it takes no money; ProviderRefused `checkout_completed` (with
        the checkout's state under detail["checkout"]) when money moved first."""

    async def refund(self, refund: Refund) -> RefundState:
        """Give back `refund.amount_minor` of the payment's money."""

    async def refund_state(self, refund: Refund) -> RefundState:
        """Refund sync, for a refund whose webhook is overdue."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class WebhookRefused(Exception):
    """A webhook we do not take: its HTTP status, code and message."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class VerifiedWebhook:
    """A webhook whose signature and timestamp passed: its id (the dedupe key) and body."""

    webhook_id: str
    body: Any
    signed_for: frozenset[str] | None = None  # the merchants whose secret signed it (None: any)


@dataclass(frozen=True)
class ProviderNews:
    """What a verified webhook says, in our words (`provider_event` is one of the
    `payments_contracts.payments.ProviderEvent` literals)."""

    webhook_id: str
    provider_event: str
    account_id: str
    payment_id: UUID
    checkout_id: str
    occurred_at: datetime
    amount: Money | None = None
    provider_payment_ref: str | None = None
    reason: str | None = None
    refund_id: UUID | None = None


class WebhookSource(Protocol):
    """A provider's webhooks: verified (signature, timestamp, rotation secrets), then read.
    `verify` raises WebhookRefused (400 bad timestamp, 401 bad signature); `read` returns
    None for an event type we do not act on (acknowledged and ignored) and raises
    WebhookRefused 400 for a signed body that is not the provider's event."""

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook: ...

    def read(self, webhook: VerifiedWebhook) -> ProviderNews | None: ...
