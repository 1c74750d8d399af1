"""The read model's entities, kept in memory while a batch is applied.

Every change is idempotent and guarded by a version or a time, so applying an event
twice, or an old event again during a replay, changes nothing; and the final rows do
not depend on how the two input topics interleave (a rebuild reads them in another
order than the live projection did, and must end with the same rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime

from .status import InvoiceFacts, NotPayableReason, PaymentState, PayStatus, Standing, standing


class Park(Exception):
    """The event cannot be applied yet (or ever): keep it with the reason.

    `waits_for` names what would let it apply: `invoice:<account>/<number>` or
    `payment:<payment id>`; a parked event is retried when that appears.
    """

    def __init__(self, reason: str, waits_for: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.waits_for = waits_for


@dataclass(frozen=True)
class ParkedEvent:
    """An event kept until what it waits for appears, where it was read from and as written."""

    event_id: object
    waits_for: str
    reason: str
    type: str
    account_id: str
    topic: str
    partition: int
    offset: int
    occurred_at: datetime
    envelope: str

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def invoice_key(account_id: str, invoice_number: str) -> str:
    return f"invoice:{account_id}/{invoice_number}"


def payment_key(payment_id: str) -> str:
    return f"payment:{payment_id}"


@dataclass(frozen=True)
class Problem:
    """The last rejection or failure a portal shows next to the invoice."""

    reason_code: str
    message: str
    at: datetime


@dataclass(frozen=True)
class Restriction:
    """Payment-intake's word on whether the merchant's policy lets the invoice be paid
    online (e.g. a billing country served by a distributor). The projector keeps no
    policy of its own: it shows what the policy owner decided, with its message."""

    restricted: bool
    reason_code: str | None
    message: str | None
    at: datetime


_REFUND_RANK = {"requested": 0, "refunded": 1, "failed": 1}


@dataclass(frozen=True)
class Refund:
    """Money going back for a payment on this invoice that must not keep it (taken late,
    twice or in another amount). Such money was never counted as paid, so a refund does
    not change the balance; the portal shows it so the customer knows where it went."""

    payment_id: str
    state: str  # requested | refunded | failed
    amount_minor: int
    reason_code: str | None
    at: datetime

    def replaces(self, other: Refund | None) -> bool:
        """The newest word wins; for one payment a settled refund beats its request."""
        if other is None:
            return True
        if self.payment_id == other.payment_id:
            return (_REFUND_RANK[self.state], self.at) >= (_REFUND_RANK[other.state], other.at)
        return (self.at, self.payment_id) >= (other.at, other.payment_id)


@dataclass(frozen=True)
class AccountPolicy:
    """Payment-intake's word on whether the account may pay its whole balance online."""

    account_id: str
    balance_payment_allowed: bool
    reason_code: str | None
    message: str | None
    at: datetime

    def replaces(self, other: AccountPolicy | None) -> bool:
        """The newest word on the account wins; a repeat of the same word changes nothing."""
        return other is None or self.at >= other.at


@dataclass(kw_only=True)
class ErpFacts:
    """What one ERP version states of an invoice (an `invoice.synced`)."""

    erp_version: int
    currency: str
    order_number: str | None
    po_number: str | None
    invoice_date: date
    due_date: date
    total_minor: int
    open_amount_minor: int
    erp_status: str
    billing_country: str
    posted_refs: list[str] = field(default_factory=list)


_ERP_FIELDS = tuple(f.name for f in fields(ErpFacts))
_NO_REFS: frozenset[str] = frozenset()


@dataclass(kw_only=True)
class Invoice(ErpFacts):
    """An invoice of the read model: the ERP's facts, and what payments and the provider
    made of them."""

    account_id: str
    invoice_number: str
    registration: str | None = None  # registered | failed
    registration_version: int = -1
    closed_reason: str | None = None
    closed_version: int = -1
    succeeded: dict[str, int] = field(default_factory=dict)
    current_payment_id: str | None = None
    current_payment_state: PaymentState | None = None
    current_payment_amount: int | None = None
    current_payment_at: datetime | None = None
    last_problem: Problem | None = None
    restriction: Restriction | None = None
    refund: Refund | None = None
    last_event_at: datetime | None = None
    balance_minor: int = 0
    pay_status: PayStatus = PayStatus.NOT_PAYABLE
    not_payable_reason: NotPayableReason | None = NotPayableReason.NOT_REGISTERED

    @property
    def key(self) -> tuple[str, str]:
        return (self.account_id, self.invoice_number)

    @classmethod
    def from_erp(cls, account_id: str, invoice_number: str, facts: ErpFacts) -> Invoice:
        return cls(
            account_id=account_id,
            invoice_number=invoice_number,
            **{name: getattr(facts, name) for name in _ERP_FIELDS},
        )

    def take_erp_facts(self, facts: ErpFacts) -> bool:
        """The newer ERP version wins. The same version applies again (invoice-sync states
        a version once more when an account snapshot reopens the invoice); an older one
        changes nothing (False)."""
        if facts.erp_version < self.erp_version:
            return False
        for name in _ERP_FIELDS:
            setattr(self, name, getattr(facts, name))
        return True

    def take_open_amount(self, erp_version: int, open_amount_minor: int) -> bool:
        """A balance change of the ERP, under the same version rule as its other facts."""
        if erp_version < self.erp_version:
            return False
        self.open_amount_minor, self.erp_version = open_amount_minor, erp_version
        return True

    def touched(self, at: datetime) -> None:
        if self.last_event_at is None or at > self.last_event_at:
            self.last_event_at = at

    def note_problem(self, problem: Problem) -> None:
        """The newest problem wins (a replayed older one does not hide a newer one)."""
        if self.last_problem is None or (problem.at, problem.reason_code) >= (
            self.last_problem.at,
            self.last_problem.reason_code,
        ):
            self.last_problem = problem

    def restrict(self, restriction: Restriction) -> None:
        """The newest decision wins, whatever order a replay delivers them in; at the same
        time a restriction beats a lift (the safer reading of a tie)."""
        current = self.restriction
        if current is None or (restriction.at, restriction.restricted) >= (current.at, current.restricted):
            self.restriction = restriction

    def note_refund(self, refund: Refund) -> None:
        current = self.refund
        if current is not None and current.payment_id == refund.payment_id and refund.reason_code is None:
            refund = replace(refund, reason_code=current.reason_code)  # settled: keep why it was asked
        if refund.replaces(current):
            self.refund = refund

    @property
    def restricted(self) -> bool:
        return self.restriction is not None and self.restriction.restricted

    def follow_payment(self, payment_id: str, state: PaymentState, amount: int, at: datetime) -> None:
        """The current payment is the most recently requested one."""
        if (
            self.current_payment_id is None
            or self.current_payment_at is None
            or (at, payment_id) >= (self.current_payment_at, self.current_payment_id)
        ):
            self.current_payment_id = payment_id
            self.current_payment_state = state
            self.current_payment_amount = amount
            self.current_payment_at = at

    def refresh(self) -> None:
        """Recompute balance and pay status from the facts (docs/product.md, "Pay status")."""
        closed = self.closed_reason if self.closed_version >= self.erp_version else None
        restriction = self.restriction
        # Positional, and no set of nothing: refresh runs for every changed invoice of every
        # batch (2.1 → 1.2 µs; InvoiceFacts' fields, in order).
        result: Standing = standing(
            InvoiceFacts(
                self.erp_status,
                self.total_minor,
                self.open_amount_minor,
                frozenset(self.posted_refs) if self.posted_refs else _NO_REFS,
                self.succeeded,
                self.registration,
                closed,
                restriction is not None and restriction.restricted,
                self.current_payment_state,
            )
        )
        self.balance_minor = result.balance_minor
        self.pay_status = result.pay_status
        self.not_payable_reason = result.not_payable_reason


@dataclass
class Payment:
    payment_id: str
    account_id: str
    state: PaymentState
    state_at: datetime  # occurred_at of the event that set `state`
    requested_at: datetime
    currency: str
    allocations: dict[str, int]  # invoice number -> amount in minor units
