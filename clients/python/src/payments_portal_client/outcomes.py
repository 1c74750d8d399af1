"""What a command came to, as a portal shows it, and the correlation of outcomes on
`payments.events` with the commands waiting for them.

Every outcome payment-intake publishes carries the command's event id as its
`correlation_id`, so one subscription per process can answer every waiting command.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from pydantic import TypeAdapter

from payments_contracts.envelope import Envelope
from payments_contracts.money import Money
from payments_contracts.payments import (
    Allocation,
    CheckoutOpened,
    PaymentCancelled,
    PaymentEvent,
    PaymentExpired,
    PaymentFailed,
    PaymentRejected,
    PaymentRequested,
    RemittanceInstructions,
)
from payments_contracts.remittance import RemittanceDetails as MerchantRemittance

# payment-intake answers remittance (check, ACH, wire) with its details, not a payment.
OFFLINE_REMITTANCE = "offline_remittance"

_EVENTS: TypeAdapter[Envelope] = TypeAdapter(PaymentEvent)


@dataclass(frozen=True)
class Accepted:
    """The payment was requested; `checkout_url` is the hosted card page or the payer
    portal (None when not awaited, or for the repeat of an earlier command)."""

    command_id: UUID
    payment_id: UUID
    scope: str
    method: str
    allocations: tuple[Allocation, ...]
    total: Money
    checkout_url: str | None = None
    checkout_expires_at: datetime | None = None
    repeat_of: UUID | None = None


@dataclass(frozen=True)
class Rejected:
    command_id: UUID
    reason_code: str
    message: str
    invoice_numbers: tuple[str, ...] = ()
    repeat_of: UUID | None = None


@dataclass(frozen=True)
class RemittanceDetails:
    """Pay offline (check, ACH, wire): what to pay, to whom, quoting which invoices."""

    command_id: UUID
    message: str
    invoice_numbers: tuple[str, ...]
    channel: str | None = None
    amount: Money | None = None
    reference: str | None = None
    details: MerchantRemittance | None = None
    repeat_of: UUID | None = None


@dataclass(frozen=True)
class Ended:
    """The payment ended before its checkout opened (provider refused, cancelled, expired),
    or a cancel command's answer."""

    command_id: UUID
    payment_id: UUID
    outcome: str  # failed | cancelled | expired
    reason_code: str
    message: str


Outcome = Accepted | Rejected | RemittanceDetails | Ended


def first_outcome(event: Envelope, command_id: UUID) -> Outcome | None:
    """The answer `event` gives to the command, if it is one (else None)."""
    if isinstance(event, PaymentRejected):
        p = event.payload
        if p.reason_code == OFFLINE_REMITTANCE:
            return RemittanceDetails(command_id, p.message, tuple(p.invoice_numbers))
        return Rejected(command_id, p.reason_code, p.message, tuple(p.invoice_numbers), p.repeat_of)
    if isinstance(event, RemittanceInstructions):
        i = event.payload
        numbers = tuple(a.invoice_number for a in i.allocations)
        return RemittanceDetails(
            command_id, i.message, numbers, i.channel, i.amount, i.reference, i.details, i.repeat_of
        )
    if isinstance(event, PaymentRequested):
        r = event.payload
        return Accepted(
            command_id, r.payment_id, r.scope, r.method, tuple(r.allocations), r.total, repeat_of=r.repeat_of
        )
    if isinstance(event, PaymentFailed | PaymentCancelled | PaymentExpired):
        e = event.payload
        return Ended(command_id, e.payment_id, event.type.removeprefix("payment."), e.reason_code, e.message)
    return None


class Correlator:
    """Futures of the commands in flight, resolved by the events that answer them.

    With `until_checkout`, an accepted online payment resolves only once its checkout
    page is open (or the payment ended first); otherwise the first answer resolves it.
    """

    def __init__(self) -> None:
        self._waiting: dict[UUID, _Waiter] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, command_id: UUID, *, until_checkout: bool = False) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = _Waiter(future, until_checkout)
        return future

    def forget(self, command_id: UUID) -> None:
        self._waiting.pop(command_id, None)

    def offer_raw(self, value: bytes | None) -> None:
        """A record from `payments.events`: only a waited-for one is fully decoded."""
        if not self._waiting or not value:
            return
        try:
            correlation = UUID(json.loads(value)["correlation_id"])
        except (ValueError, KeyError, TypeError):
            return
        if correlation in self._waiting:
            self.offer(_EVENTS.validate_json(value))

    def offer(self, event: Envelope) -> None:
        waiter = self._waiting.get(event.correlation_id)
        if waiter is None:
            return
        if waiter.future.done():
            self.forget(event.correlation_id)
            return
        outcome = waiter.answer(event, event.correlation_id)
        if outcome is not None:
            waiter.future.set_result(outcome)
            self.forget(event.correlation_id)


@dataclass
class _Waiter:
    future: asyncio.Future[Outcome]
    until_checkout: bool
    accepted: Accepted | None = None

    def answer(self, event: Envelope, command_id: UUID) -> Outcome | None:
        if self.accepted is not None:
            if isinstance(event, CheckoutOpened):
                c = event.payload
                return _with_checkout(self.accepted, c.checkout_url, c.expires_at)
            ended = first_outcome(event, command_id)
            return ended if isinstance(ended, Ended) else None
        outcome = first_outcome(event, command_id)
        if (
            isinstance(outcome, Accepted)
            and self.until_checkout
            and outcome.repeat_of is None
            and outcome.method != "remittance"
        ):
            self.accepted = outcome
            return None
        return outcome


def _with_checkout(accepted: Accepted, url: str, expires_at: datetime) -> Accepted:
    return replace(accepted, checkout_url=url, checkout_expires_at=expires_at)
