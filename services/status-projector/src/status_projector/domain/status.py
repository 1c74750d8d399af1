"""Pay status rules (docs/product.md, "Pay status"): the balance an invoice shows and what the
portal may do with it.

The balance is the ERP's open amount minus the payments that succeeded with us but
that the ERP has not posted yet. A payment the ERP has posted carries our payment id
as its reference; it is already inside the open amount, so it is not subtracted
again. The balance is never negative (an ERP that posts faster than we learn of a
success, or a credit note, must not show a credit as "negative balance due").

How pay status and the Pay button interact:
- `pay_status` says where the invoice stands; `pay_button` says whether the portal
  may offer to pay it now. The button shows for `payable` and `partially_paid`
  (seed 003 lists "unpaid or partially-paid" invoices as selectable), never for
  `pending` (seed 000: "a payment against this invoice is already pending"),
  `paid` or `not_payable`, and never when the provider is not configured.
- `pay_button_reason` names why the button is hidden, for the portal's message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import NamedTuple


class PayStatus(StrEnum):
    PAYABLE = "payable"
    PENDING = "pending"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    NOT_PAYABLE = "not_payable"


class NotPayableReason(StrEnum):
    NOT_REGISTERED = "not_registered"
    REGISTRATION_FAILED = "registration_failed"
    ZERO_BALANCE = "zero_balance"
    CANCELLED = "cancelled"
    CLOSED = "closed"
    RESTRICTED = "restricted"


class PaymentState(StrEnum):
    """A payment's state, spelled as payment-intake spells its status (the event that
    enters a state is named in the past tense: `payment.checkout_opened`)."""

    REQUESTED = "requested"
    CHECKOUT_OPEN = "checkout_open"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @classmethod
    def _missing_(cls, value: object) -> PaymentState | None:
        # Rows written before the one spelling read back until the next rebuild.
        return cls.CHECKOUT_OPEN if value == "checkout_opened" else None

    @property
    def active(self) -> bool:
        """A checkout is open or money is moving: the invoice is `pending`."""
        return self in _ACTIVE


_ACTIVE = frozenset({PaymentState.REQUESTED, PaymentState.CHECKOUT_OPEN, PaymentState.PROCESSING})
_ENDED = frozenset({PaymentState.FAILED, PaymentState.CANCELLED, PaymentState.EXPIRED})

PAY_BUTTON_STATUSES = frozenset({PayStatus.PAYABLE, PayStatus.PARTIALLY_PAID})


class InvoiceFacts(NamedTuple):
    """What the rules need to know about one invoice.

    (Named tuples, this and `Standing`: built for every changed invoice of every batch,
    at less than half the cost of a frozen dataclass.)"""

    erp_status: str  # open | closed | cancelled
    total_minor: int
    open_amount_minor: int
    posted_refs: frozenset[str]
    succeeded: Mapping[str, int]  # our payment id -> amount allocated to this invoice
    registration: str | None  # registered | failed | None
    closed_reason: str | None  # from invoice.closed, still in force
    restricted: bool  # the merchant's policy (payment-intake owns it) forbids paying online
    current_payment_state: PaymentState | None


class Standing(NamedTuple):
    balance_minor: int
    pay_status: PayStatus
    not_payable_reason: NotPayableReason | None


def balance(open_amount_minor: int, succeeded: Mapping[str, int], posted_refs: Iterable[str]) -> int:
    """ERP open amount minus our succeeded payments the ERP has not posted; never negative."""
    if not succeeded:
        return max(0, open_amount_minor)
    posted = posted_refs if isinstance(posted_refs, frozenset | set) else set(posted_refs)
    unposted = sum(amount for payment_id, amount in succeeded.items() if payment_id not in posted)
    return max(0, open_amount_minor - unposted)


def standing(facts: InvoiceFacts) -> Standing:
    """Pay status and balance of one invoice. The order of the checks is the rule."""
    if facts.erp_status == "cancelled" or facts.closed_reason == "cancelled":
        return Standing(0, PayStatus.NOT_PAYABLE, NotPayableReason.CANCELLED)
    owed = balance(facts.open_amount_minor, facts.succeeded, facts.posted_refs)
    if facts.current_payment_state is not None and facts.current_payment_state.active:
        return Standing(owed, PayStatus.PENDING, None)
    paid_something = bool(facts.succeeded) or bool(facts.posted_refs)
    if owed == 0:
        if paid_something:
            return Standing(0, PayStatus.PAID, None)
        return Standing(0, PayStatus.NOT_PAYABLE, NotPayableReason.ZERO_BALANCE)
    if facts.erp_status == "closed" or facts.closed_reason is not None:
        return Standing(owed, PayStatus.NOT_PAYABLE, NotPayableReason.CLOSED)
    if facts.restricted:
        return Standing(owed, PayStatus.NOT_PAYABLE, NotPayableReason.RESTRICTED)
    if facts.registration == "failed":
        return Standing(owed, PayStatus.NOT_PAYABLE, NotPayableReason.REGISTRATION_FAILED)
    if facts.registration != "registered":
        return Standing(owed, PayStatus.NOT_PAYABLE, NotPayableReason.NOT_REGISTERED)
    if paid_something:
        return Standing(owed, PayStatus.PARTIALLY_PAID, None)
    return Standing(owed, PayStatus.PAYABLE, None)


def pay_button(
    pay_status: PayStatus | str,
    not_payable_reason: NotPayableReason | str | None,
    *,
    provider_configured: bool,
) -> tuple[bool, str | None]:
    """Whether the invoice's Pay button shows, and if not, why not."""
    if not provider_configured:
        return False, "provider_not_configured"
    status = PayStatus(pay_status)
    if status in PAY_BUTTON_STATUSES:
        return True, None
    if status is PayStatus.NOT_PAYABLE:
        return False, str(not_payable_reason or status.value)
    return False, status.value


def account_pay_button(
    balance_minor: int, *, provider_configured: bool, pending: int = 0, unregistered: int = 0
) -> bool:
    """Seed 000: the account PAY button shows when the provider is configured and the
    account balance is greater than zero; and, since payment-intake refuses a balance
    payment while any invoice it would cover is pending or not yet sent to the provider
    (the order of checks), not while one is: a button whose every press is refused is
    not shown."""
    return provider_configured and balance_minor > 0 and pending == 0 and unregistered == 0


def account_button_hidden_because(
    balance_minor: int, *, provider_configured: bool, pending: int, unregistered: int
) -> str | None:
    """Why `account_pay_button` hides the button (None: it shows), in the order it checks."""
    if not provider_configured:
        return "provider_not_configured"
    if balance_minor <= 0:
        return "zero_balance"
    if pending:
        return "payment_pending"
    if unregistered:
        return "not_registered"
    return None


# Payment state machine ---------------------------------------------------------------

_RANK = {
    PaymentState.REQUESTED: 0,
    PaymentState.CHECKOUT_OPEN: 1,
    PaymentState.PROCESSING: 2,
    PaymentState.SUCCEEDED: 3,
    PaymentState.FAILED: 3,
    PaymentState.CANCELLED: 3,
    PaymentState.EXPIRED: 3,
}


class Transition(StrEnum):
    APPLY = "apply"
    NO_OP = "no_op"  # a repeat, or an older state arriving again during a replay
    IMPOSSIBLE = "impossible"


# Members bound once: reading one off its enum class costs more than the rest of a step.
_NO_OP, _APPLY, _SUCCEEDED = Transition.NO_OP, Transition.APPLY, PaymentState.SUCCEEDED


def transition(current: PaymentState, new: PaymentState) -> Transition:
    """Payment events of one account arrive in order (one partition), so a step back is a
    replayed old event and changes nothing. A provider may still report money moving
    after a checkout expired or was cancelled: money that moved wins. Anything else
    after an end (succeeded then failed, failed then cancelled) is impossible."""
    if new == current:
        return _NO_OP
    rank_new, rank_current = _RANK[new], _RANK[current]
    if rank_new < rank_current:
        return _NO_OP
    if rank_new > rank_current:
        return _APPLY
    if current in _ENDED and new is _SUCCEEDED:
        return _APPLY
    return Transition.IMPOSSIBLE
