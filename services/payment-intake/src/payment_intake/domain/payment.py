"""The payment state machine.

```
requested ──checkout opened──▶ checkout_open ──processing──▶ processing ──▶ succeeded
    │                              │                             └────────▶ failed
    └──────────────┬───────────────┘
                   ▼
   succeeded | failed | cancelled | expired
```

(`rejected` is the answer to a command that never became a payment.) Only the moves
above happen. Callbacks arrive late, twice and out of order: a callback that would
move a payment anywhere else is recorded and changes nothing; one that says money
moved after we ended the payment, or confirms another amount than we asked, is
flagged for an operator instead of being accepted silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from payments_contracts.money import Money


class PaymentStatus(StrEnum):
    REQUESTED = "requested"
    CHECKOUT_OPEN = "checkout_open"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        """The invoice is pending while its payment is open."""
        return self in OPEN

    @property
    def is_final(self) -> bool:
        return self not in OPEN


OPEN = frozenset({PaymentStatus.REQUESTED, PaymentStatus.CHECKOUT_OPEN, PaymentStatus.PROCESSING})
# Its hosted page may still be used, so the checkout's time limit applies.
EXPIRABLE = frozenset({PaymentStatus.REQUESTED, PaymentStatus.CHECKOUT_OPEN})
# The provider holds a checkout whose outcome we do not know yet: status sync asks about it.
AWAITING_PROVIDER = frozenset({PaymentStatus.CHECKOUT_OPEN, PaymentStatus.PROCESSING})


class Happening(StrEnum):
    """What can happen to a payment: provider callbacks, our worker, the customer, the timer."""

    CHECKOUT_OPENED = "checkout_opened"
    PROCESSING = "payment.processing"
    SUCCEEDED = "payment.succeeded"
    FAILED = "payment.failed"
    CANCELLED = "checkout.cancelled"
    EXPIRED = "checkout.expired"


S, H = PaymentStatus, Happening
_LEGAL: dict[tuple[PaymentStatus, Happening], PaymentStatus] = {
    (S.REQUESTED, H.CHECKOUT_OPENED): S.CHECKOUT_OPEN,
    # A provider callback can overtake our own record of the opened checkout.
    (S.REQUESTED, H.PROCESSING): S.PROCESSING,
    (S.REQUESTED, H.SUCCEEDED): S.SUCCEEDED,
    (S.REQUESTED, H.FAILED): S.FAILED,
    (S.REQUESTED, H.CANCELLED): S.CANCELLED,
    (S.REQUESTED, H.EXPIRED): S.EXPIRED,
    (S.CHECKOUT_OPEN, H.PROCESSING): S.PROCESSING,
    (S.CHECKOUT_OPEN, H.SUCCEEDED): S.SUCCEEDED,
    (S.CHECKOUT_OPEN, H.FAILED): S.FAILED,
    (S.CHECKOUT_OPEN, H.CANCELLED): S.CANCELLED,
    (S.CHECKOUT_OPEN, H.EXPIRED): S.EXPIRED,
    # Money may be moving: a processing payment only ends by the provider's word.
    (S.PROCESSING, H.SUCCEEDED): S.SUCCEEDED,
    (S.PROCESSING, H.FAILED): S.FAILED,
}


@dataclass(frozen=True)
class Flag:
    reason_code: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The result of one happening: the new status (None: unchanged) and any flag raised."""

    to: PaymentStatus | None
    note: str
    flag: Flag | None = None


def next_status(status: PaymentStatus, happening: Happening) -> PaymentStatus | None:
    return _LEGAL.get((status, happening))


def apply(
    status: PaymentStatus,
    happening: Happening,
    *,
    asked_minor: int | None = None,
    asked_currency: str | None = None,
    confirmed_minor: int | None = None,
    confirmed_currency: str | None = None,
) -> Decision:
    """Decide what `happening` does to a payment in `status` (pure; nothing is stored)."""
    target = next_status(status, happening)
    if happening is H.SUCCEEDED:
        mismatch = _amount_mismatch(asked_minor, asked_currency, confirmed_minor, confirmed_currency)
        if target is not None and mismatch is not None:
            # Money moved, but not what we asked: keep the invoice pending (nobody pays
            # it again) and let an operator settle it.
            keep = None if status is S.PROCESSING else S.PROCESSING
            return Decision(keep, "amount mismatch", Flag("amount_mismatch", mismatch))
        if target is None and status is not S.SUCCEEDED:
            return Decision(
                None,
                f"success after the payment was {status}",
                Flag(
                    "succeeded_after_end",
                    f"The provider reports money moved for a payment that is {status}:"
                    " refund or reconcile it.",
                ),
            )
    if target is None:
        late = status.is_final or status is S.PROCESSING
        return Decision(None, f"{'late' if late else 'illegal'}: {happening} while {status}")
    return Decision(target, "applied")


def _amount_mismatch(
    asked_minor: int | None,
    asked_currency: str | None,
    confirmed_minor: int | None,
    confirmed_currency: str | None,
) -> str | None:
    if asked_minor is None:
        return None  # nothing asked to compare with (not a success callback)
    if confirmed_minor is None:
        return "The provider reported success without confirming an amount."
    if confirmed_currency != asked_currency or confirmed_minor != asked_minor:
        return (
            f"The provider confirmed {confirmed_minor} {confirmed_currency} (minor units) for a"
            f" payment of {asked_minor} {asked_currency}."
        )
    return None


@dataclass(frozen=True)
class NewPayment:
    """A payment a pay command opens (stored as `requested`, with its allocations)."""

    payment_id: UUID
    account_id: str
    idempotency_key: str
    scope: str
    method: str
    currency: str
    allocations: tuple[tuple[str, int], ...]
    command_event_id: UUID
    correlation_id: UUID

    @property
    def total_minor(self) -> int:
        return sum(amount for _, amount in self.allocations)


@dataclass(frozen=True)
class ProviderWord:
    """What the provider says happened to a payment: from a webhook or a status query."""

    happening: Happening
    checkout_id: str | None = None
    amount: Money | None = None
    provider_payment_ref: str | None = None
    reason: str | None = None
    end_code: str | None = None  # overrides the outcome's reason code (e.g. unknown_at_provider)

    @property
    def confirmed_minor(self) -> int | None:
        return None if self.amount is None else self.amount.amount_minor

    @property
    def confirmed_currency(self) -> str | None:
        return None if self.amount is None else self.amount.currency


_END_CODES = {
    Happening.FAILED: "payment_failed",
    Happening.CANCELLED: "checkout_cancelled",
    Happening.EXPIRED: "checkout_expired",
}


@dataclass(frozen=True)
class Verdict:
    """What the provider's word does to a payment: the move (if any), what to record
    about the amount, and whether an operator must look at it."""

    decision: Decision
    verdict: str  # applied | ignored | flagged: the callback log's word
    note_confirmation: bool  # keep the amount the provider confirmed though nothing moved
    move_reason: str | None  # the payment's end reason when it moves
    reason_code: str  # the outcome's reason code when it moves
    new_flag: Flag | None  # a flag the payment did not carry yet: announce it


@dataclass(frozen=True)
class Payment:
    payment_id: UUID
    account_id: str
    idempotency_key: str
    status: PaymentStatus
    currency: str
    total_minor: int
    method: str
    scope: str
    command_event_id: UUID
    correlation_id: UUID
    checkout_id: str | None
    expires_at: datetime
    open_attempts: int
    allocations: tuple[tuple[str, int], ...]
    confirmed_minor: int | None = None
    confirmed_currency: str | None = None
    provider_payment_ref: str | None = None
    flag_reason: str | None = None
    updated_at: datetime | None = None

    def judge(self, word: ProviderWord) -> Verdict:
        """The provider's word on this payment, the same whether it came as a webhook or
        as the answer to a status query."""
        happening = word.happening
        decision = apply(
            self.status,
            happening,
            asked_minor=self.total_minor if happening is Happening.SUCCEEDED else None,
            asked_currency=self.currency,
            confirmed_minor=word.confirmed_minor,
            confirmed_currency=word.confirmed_currency,
        )
        if decision.flag is not None:
            verdict = "flagged"
        else:
            verdict = "applied" if decision.to is not None else "ignored"
        move_reason = word.end_code or word.reason
        if move_reason is None and decision.to is not None and not decision.to.is_open:
            move_reason = happening.value
        return Verdict(
            decision=decision,
            verdict=verdict,
            note_confirmation=happening is Happening.SUCCEEDED and decision.flag is not None,
            move_reason=move_reason,
            reason_code=word.end_code or _END_CODES.get(happening, happening.value),
            new_flag=decision.flag if self.flag_reason is None else None,
        )
