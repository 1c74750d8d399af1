"""Registration with the payment provider: what the provider should hold for an invoice,
what it answered, and the port through which we ask it.

An open invoice with a balance is registered at exactly its open amount ("sent to the
provider for payment processing"); anything else that the provider holds is withdrawn.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from .model import Invoice, InvoiceKey, Payable, ProviderState

Action = Literal["register", "withdraw"]


@dataclass(frozen=True, slots=True)
class Intent:
    """What to ask the provider next for one invoice."""

    action: Action
    erp_version: int
    amount_minor: int | None = None
    currency: str | None = None


def intent_for(invoice: Invoice | Payable) -> Intent | None:
    """What the provider must be told so that it holds what the invoice says, if anything."""
    state = invoice.provider
    balance = invoice.payable_balance_minor
    if balance > 0:
        currency = invoice.currency
        assert currency is not None
        if state.registered_amount_minor == balance and state.registered_currency == currency:
            return None
        if state.refused_version == invoice.erp_version:
            return None  # refused for good; a new ERP version may be accepted
        return Intent("register", invoice.erp_version, balance, currency)
    if state.registered:
        return Intent("withdraw", invoice.erp_version)
    return None


@dataclass(frozen=True, slots=True)
class PendingRegistration:
    """A claimed provider call: `intent`, queued at `revision` (a newer intent for the
    same invoice replaces the call and gets a higher revision)."""

    account_id: str
    invoice_number: str
    intent: Intent
    revision: int
    cause_event_id: str | None
    correlation_id: str | None
    attempts: int

    @property
    def key(self) -> InvoiceKey:
        return (self.account_id, self.invoice_number)


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    account_id: str
    invoice_number: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class WithdrawalRequest:
    account_id: str
    invoice_number: str


@dataclass(frozen=True, slots=True)
class Accepted:
    provider_invoice_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A permanent refusal: asking again with the same data will not help."""

    code: str
    message: str


Outcome = Accepted | Refused


class ProviderPort(Protocol):
    """The payment provider's invoice registration API.

    Implementations raise `payments_platform.messaging.TransientError` when the provider
    cannot answer now (down, overloaded, timed out): the work is retried later.
    """

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]: ...

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True)
class Registered:
    invoice: Payable
    provider_invoice_id: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    invoice: Payable
    erp_version: int
    code: str
    message: str


Result = Registered | RegistrationFailed


def record_outcome(invoice: Payable, attempted: Intent, outcome: Outcome) -> tuple[Payable, list[Result]]:
    """The invoice after the provider answered `attempted`, and what to announce.

    `invoice` is the current one, which may have moved on while the provider was being
    asked: only an answer about the current amount (or version) is announced. An answer
    that only repeats what is already recorded announces nothing: two workers can ask
    the same question when one's lease ran out while it waited, and both hear the answer.
    """
    state = invoice.provider
    if attempted.action == "register":
        if isinstance(outcome, Accepted):
            state = ProviderState(
                registered_amount_minor=attempted.amount_minor,
                registered_currency=attempted.currency,
                provider_invoice_id=outcome.provider_invoice_id,
            )
            if state == invoice.provider:
                return invoice, []
            updated = invoice.holding(state)
            current = (
                updated.payable_balance_minor == attempted.amount_minor
                and updated.currency == attempted.currency
            )
            announced: list[Result] = (
                [Registered(updated, outcome.provider_invoice_id, updated.payable_balance_minor)]
                if current
                else []
            )
            return updated, announced
        if (state.refusal, state.refused_version) == (outcome.code, attempted.erp_version):
            return invoice, []
        updated = invoice.holding(replace(state, refusal=outcome.code, refused_version=attempted.erp_version))
        if attempted.erp_version != invoice.erp_version:
            return updated, []
        return updated, [RegistrationFailed(updated, attempted.erp_version, outcome.code, outcome.message)]
    # A withdrawal the provider refuses (it never knew the invoice, say) leaves nothing
    # registered either: the provider holds nothing we want collected.
    return invoice.holding(ProviderState()), []


def forget_refusal(invoice: Payable) -> Payable | None:
    """The invoice with the provider's permanent refusal forgotten (an operator says the
    provider may have been fixed); None when the provider has not refused it."""
    if invoice.provider.refused_version is None:
        return None
    return invoice.holding(replace(invoice.provider, refusal=None, refused_version=None))


QueueChange = Intent | Literal["keep", "drop"]


def after_answer(invoice: Payable, asked: PendingRegistration, queued_revision: int | None) -> QueueChange:
    """What becomes of the invoice's queued provider call once `invoice` (as it is after
    the answer to `asked`) is recorded: a call it still needs is queued, unless a newer
    intent replaced the one asked meanwhile; a queued call it no longer needs is dropped."""
    wanted = intent_for(invoice)
    if wanted is None:
        return "keep" if queued_revision is None else "drop"
    if queued_revision is None or queued_revision == asked.revision:
        return wanted  # the invoice moved on while the provider was being asked
    return "keep"


Answer = tuple[PendingRegistration, Outcome]


QueuedCall = tuple[Payable, Intent] | None  # None: no call is needed any more


@dataclass(slots=True)
class AnswersRecorded:
    """What a batch of provider answers changes, for the unit of work to store at once."""

    answered: dict[InvoiceKey, Payable] = field(default_factory=dict)  # what the provider holds
    results: list[Result] = field(default_factory=list)  # to announce, in answer order
    queue: dict[InvoiceKey, QueuedCall] = field(default_factory=dict)  # the call each now needs


def record_answers(
    answers: Sequence[Answer], invoices: Mapping[InvoiceKey, Payable], queued: Mapping[InvoiceKey, int]
) -> AnswersRecorded:
    """`record_outcome` and `after_answer` for a whole batch of answers: `invoices` as they
    are now (the ERP may have changed them while the provider was being asked), `queued`
    the revision of each invoice's queued call. Answers are recorded in order, each on
    the invoice as the answers before it left it."""
    recorded = AnswersRecorded()
    current = dict(invoices)
    for pending, outcome in answers:
        key = pending.key
        invoice = current.get(key)
        if invoice is None:  # cannot happen: calls are only queued for stored invoices
            recorded.queue[key] = None
            continue
        updated, results = record_outcome(invoice, pending.intent, outcome)
        if updated is not invoice:
            current[key] = recorded.answered[key] = updated
        recorded.results += results
        change = after_answer(updated, pending, queued.get(key))
        if change == "drop":
            recorded.queue[key] = None
        elif change != "keep":
            recorded.queue[key] = (updated, change)
    return recorded


def retry_delay(attempts: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds before asking the provider again after `attempts` failed tries (jittered)."""
    ceiling = min(cap, base * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
