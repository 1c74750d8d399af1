"""Pay commands: consecutive ones of a consumed batch are answered as one run (a single
command is a run of one), in a few round trips: the answers under all keys and the
facts of all named invoices are read at once, every command is decided in order
(`PayRun`), and the payments and answers are written together. The unique index on
open allocations stays the backstop: if another consumer won an invoice meanwhile, the
run's writes are undone and its commands are answered one by one.

The provider is never called from here: a requested payment is picked up by the
checkout opener once this transaction has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeAlias
from uuid import uuid4

from payment_intake.domain.billing import GuestDetails
from payment_intake.domain.commands import PayRun, invoice_taken
from payment_intake.domain.intake import PayRequest, RequestedInvoice
from payment_intake.domain.payment import NewPayment
from payment_intake.domain.rejections import Rejection
from payment_intake.domain.remittance import RemittanceAnswer
from payment_intake.handlers.answers import Keyed, again, answer_once, keyed, record
from payment_intake.messages import rejected, remittance_instructions, requested
from payment_intake.unit_of_work import UnitOfWork
from payments_contracts import Envelope
from payments_contracts.payments import (
    BillingAddress,
    CardOnline,
    GuestCheckout,
    PayAccountBalance,
    PayInvoice,
    PaySelectedInvoices,
    Remittance,
)
from payments_platform.messaging import TransientError
from payments_platform.observability import about

log = logging.getLogger(__name__)

PayCommand: TypeAlias = PayInvoice | PaySelectedInvoices | PayAccountBalance


async def on_pay(commands: Sequence[PayCommand], uow: UnitOfWork) -> None:
    pays = [_read(c) for c in commands]
    run = PayRun(
        await uow.commands.get_many([(k.command.account_id, k.key) for k, _ in pays]),
        await uow.invoices.account_views(
            [(k.command.account_id, _numbers(r)) for k, r in pays if r is not None]
        ),
    )
    answers = [_answer(run, pay, request, uow) for pay, request in pays]
    if await uow.payments.write_run(run.opened, run.answered, ttl_s=uow.config.checkout_ttl_s):
        for answer in answers:
            uow.publish(answer)
        return
    if len(commands) > 1:
        log.info("pay run lost a race; answering its commands one by one", extra={"size": len(pays)})
        for command in commands:
            await on_pay([command], uow)
        return
    if not run.opened:  # another consumer answered the key meanwhile: the retry repeats it
        raise TransientError("the idempotency key was answered meanwhile")
    pay = pays[0][0]
    await answer_once(uow, pay, rejected(pay.command, pay.key, invoice_taken(run.opened[0])))


def _answer(run: PayRun, pay: Keyed, request: PayRequest | None, uow: UnitOfWork) -> Envelope:
    command = pay.command
    first = run.first_answer(command.account_id, pay.key)
    if first is not None:
        return again(pay, first)
    method = command.payload.method
    channel = method.channel if isinstance(method, Remittance) else "check"
    decision = run.decide(command.account_id, request, uow.config.policies, channel)
    if isinstance(decision, Rejection):
        answer: Envelope = rejected(command, pay.key, decision)
    elif isinstance(decision, RemittanceAnswer):
        answer = remittance_instructions(command, pay.key, decision)
    else:
        payment = NewPayment(
            uuid4(),
            command.account_id,
            pay.key,
            decision.scope,
            decision.method,
            decision.currency,
            decision.allocations,
            command.event_id,
            command.correlation_id,
        )
        run.open(payment)
        answer = requested(command, pay.key, payment.payment_id, decision)
    run.answer(command.account_id, pay.key, record(pay, answer).stored)
    return answer


def _read(command: PayCommand) -> tuple[Keyed, PayRequest | None]:
    """The command's key, and what it asks for (None: it carried a card number)."""
    pay = keyed(command, command.payload.idempotency_key)
    if pay.carded:
        with about(command):
            log.warning("pay command carried a card number; rejected", extra={"command": command.type})
        return pay, None
    return pay, _request(command)


def _numbers(request: PayRequest) -> list[str] | None:
    """The invoices a request names (None: the whole account)."""
    if request.scope == "account_balance":
        return None
    return [i.invoice_number for i in request.invoices]


def _request(command: PayCommand) -> PayRequest:
    method = command.payload.method
    guest = None
    if isinstance(method, GuestCheckout | CardOnline):
        guest = _guest(method.billing_address, method.name_on_card)
    if isinstance(command, PayAccountBalance):
        return PayRequest("account_balance", method.kind, currency=command.payload.currency, guest=guest)
    named = (
        [(command.payload.invoice_number, command.payload.amount)]
        if isinstance(command, PayInvoice)
        else [(i.invoice_number, i.amount) for i in command.payload.invoices]
    )
    items = tuple(
        RequestedInvoice(n, None if a is None else a.amount_minor, None if a is None else a.currency)
        for n, a in named
    )
    return PayRequest(
        "invoice" if isinstance(command, PayInvoice) else "selected_invoices", method.kind, items, guest=guest
    )


def _guest(address: BillingAddress | None, name_on_card: str | None) -> GuestDetails | None:
    if address is None:
        return None
    return GuestDetails(
        email=address.email,
        street=address.street,
        address_line2=address.address_line2,
        country=address.country,
        postal_code=address.postal_code,
        phone_country_code=address.phone_country_code,
        phone_number=address.phone_number,
        name_on_card=name_on_card,
    )
