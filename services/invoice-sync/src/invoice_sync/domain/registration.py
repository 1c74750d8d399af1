"""Registration with the payment provider: what the provider should hold for an invoice,
what it answered, and the port through which we ask it.

An open invoice with a balance is registered at exactly its open amount ("sent to the
provider for payment processing"); anything else that the provider holds is withdrawn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from .model import Invoice, InvoiceKey, ProviderState

Action = Literal["register", "withdraw"]


@dataclass(frozen=True, slots=True)
class Intent:
    """What to ask the provider next for one invoice."""

    action: Action
    erp_version: int
    amount_minor: int | None = None
    currency: str | None = None


def intent_for(invoice: Invoice) -> Intent | None:
    """What the provider must be told so that it holds what the invoice says, if anything."""
    state = invoice.provider
    balance = invoice.payable_balance_minor
    if balance > 0:
        assert invoice.details is not None
        currency = invoice.details.currency
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

    Implementations raise `payments_shared.messaging.TransientError` when the provider
    cannot answer now (down, overloaded, timed out): the work is retried later.
    """

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]: ...

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True)
class Registered:
    invoice: Invoice
    provider_invoice_id: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    invoice: Invoice
    erp_version: int
    code: str
    message: str


Result = Registered | RegistrationFailed


def record_outcome(invoice: Invoice, attempted: Intent, outcome: Outcome) -> tuple[Invoice, list[Result]]:
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
            updated = replace(invoice, provider=state)
            current = (
                updated.payable_balance_minor == attempted.amount_minor
                and updated.details is not None
                and updated.details.currency == attempted.currency
            )
            announced: list[Result] = (
                [Registered(updated, outcome.provider_invoice_id, updated.payable_balance_minor)]
                if current
                else []
            )
            return updated, announced
        if (state.refusal, state.refused_version) == (outcome.code, attempted.erp_version):
            return invoice, []
        state = replace(state, refusal=outcome.code, refused_version=attempted.erp_version)
        updated = replace(invoice, provider=state)
        if attempted.erp_version != invoice.erp_version:
            return updated, []
        return updated, [RegistrationFailed(updated, attempted.erp_version, outcome.code, outcome.message)]
    # A withdrawal the provider refuses (it never knew the invoice, say) leaves nothing
    # registered either: the provider holds nothing we want collected.
    return replace(invoice, provider=ProviderState()), []


def forget_refusal(invoice: Invoice) -> Invoice | None:
    """The invoice with the provider's permanent refusal forgotten (an operator says the
    provider may have been fixed); None when the provider has not refused it."""
    if invoice.provider.refused_version is None:
        return None
    return replace(invoice, provider=replace(invoice.provider, refusal=None, refused_version=None))


QueueChange = Intent | Literal["keep", "drop"]


def after_answer(invoice: Invoice, asked: PendingRegistration, queued_revision: int | None) -> QueueChange:
    """What becomes of the invoice's queued provider call once `invoice` (as it is after
    the answer to `asked`) is recorded: a call it still needs is queued, unless a newer
    intent replaced the one asked meanwhile; a queued call it no longer needs is dropped."""
    wanted = intent_for(invoice)
    if wanted is None:
        return "keep" if queued_revision is None else "drop"
    if queued_revision is None or queued_revision == asked.revision:
        return wanted  # the invoice moved on while the provider was being asked
    return "keep"


def retry_delay(attempts: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds before asking the provider again after `attempts` failed tries (jittered)."""
    ceiling = min(cap, base * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
