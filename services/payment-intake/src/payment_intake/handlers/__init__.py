"""The route table of everything payment-intake consumes, and the batch entry the
consumer calls.

A message goes to its handler in the order consumed. Two families are handled in runs:
consecutive pay commands go to `on_pay` together (a single one is a run of one), which
answers them in a few round trips instead of a few per command; consecutive invoice facts
go to `on_invoice_facts`, which reads and writes their rows once for the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from payment_intake.domain.intake import card_number_fields
from payment_intake.handlers.callbacks import on_provider_callback
from payment_intake.handlers.cancel import on_cancel_checkout
from payment_intake.handlers.invoices import (
    on_invoice_closed,
    on_invoice_registered,
    on_invoice_registration_failed,
    on_invoice_synced,
)
from payment_intake.handlers.pay import on_pay
from payment_intake.unit_of_work import UnitOfWork
from payments_contracts import Envelope
from payments_contracts.invoices import (
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)
from payments_contracts.payments import (
    CancelCheckout,
    PayAccountBalance,
    PayInvoice,
    PaySelectedInvoices,
    ProviderCallbackReceived,
)
from payments_platform.messaging import Transaction
from payments_platform.messaging.consumer import BatchHandler, Delivery
from payments_platform.observability import about

Handler = Callable[[Any, UnitOfWork], Awaitable[None]]
RunHandler = Callable[[Sequence[Any], UnitOfWork], Awaitable[None]]

FACTS: dict[type[Envelope], Handler] = {
    InvoiceSynced: on_invoice_synced,
    InvoiceRegistered: on_invoice_registered,
    InvoiceRegistrationFailed: on_invoice_registration_failed,
    InvoiceClosed: on_invoice_closed,
}


async def on_invoice_facts(run: Sequence[Envelope], uow: UnitOfWork) -> None:
    """Consecutive invoice facts: their rows read once, each fact applied in order by its
    handler, the rows written once."""
    keys = [(m.account_id, m.payload.invoice_number) for m in run]
    await uow.invoices.preload(keys, [m.account_id for m in run if isinstance(m, InvoiceSynced)])
    for message in run:
        with about(message):
            await FACTS[type(message)](message, uow)
    await uow.invoices.flush()


HANDLERS: dict[type[Envelope], Handler] = {
    CancelCheckout: on_cancel_checkout,
    ProviderCallbackReceived: on_provider_callback,
}
RUN_HANDLERS: dict[type[Envelope], RunHandler] = {
    PayInvoice: on_pay,
    PaySelectedInvoices: on_pay,
    PayAccountBalance: on_pay,
    **dict.fromkeys(FACTS, on_invoice_facts),
}
COMMANDS = (PayInvoice, PaySelectedInvoices, PayAccountBalance, CancelCheckout)


class CardNumberInEnvelope(ValueError):
    """A card number where no answer can be sent without repeating it (the account id
    is every answer's key): the message is dead-lettered, masked, instead."""


def refuse_card_numbers_in_envelope(message: Envelope) -> None:
    # The header's text fields, read off the model's __dict__ (no dump, and not through the
    # model's __iter__, which costs several times more; envelopes forbid extra fields):
    # ids and times are typed.
    header = {
        name: value
        for name, value in message.__dict__.items()
        if name != "payload" and isinstance(value, str)
    }
    where = card_number_fields(header)
    if where:
        raise CardNumberInEnvelope(f"something that looks like a card number in {', '.join(where)}")


async def handle(messages: Sequence[Envelope], uow: UnitOfWork) -> None:
    """Each message to its handler, in order; consecutive messages of a run handler together."""
    run: list[Envelope] = []
    run_handler: RunHandler | None = None
    for message in messages:
        if isinstance(message, COMMANDS):
            refuse_card_numbers_in_envelope(message)
        joins = RUN_HANDLERS.get(type(message))
        if run and joins is not run_handler:
            await _run(run_handler, run, uow)
            run = []
        if joins is not None:
            run_handler = joins
            run.append(message)
            continue
        handler = HANDLERS.get(type(message))
        if handler is not None:
            with about(message):
                await handler(message, uow)
    if run:
        await _run(run_handler, run, uow)


async def _run(handler: RunHandler | None, run: list[Envelope], uow: UnitOfWork) -> None:
    assert handler is not None
    await handler(run, uow)


def consuming(unit_of_work: Callable[[Transaction], UnitOfWork]) -> BatchHandler:
    """The consumer's batch handler: the batch's messages through one unit of work."""

    async def handle_batch(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        await handle([d.message for d in deliveries], unit_of_work(tx))

    return handle_batch
