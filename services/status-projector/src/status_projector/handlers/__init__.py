"""The projection's rules: the one table of which handler applies which event, in the
order events are applied, and the batch entry the consumer calls.

A handler first checks that everything it needs exists, then changes state; when
something is missing it raises `Park` before changing anything, and the event is
kept in the version's parked table until what it waits for appears.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from payments_contracts import Envelope, InvoiceEvent
from payments_contracts.invoices import (
    InvoiceBalanceChanged,
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)
from payments_contracts.payments import (
    AccountBalancePaymentChanged,
    CheckoutOpened,
    InvoiceRestrictionChanged,
    PaymentCancelled,
    PaymentExpired,
    PaymentFailed,
    PaymentFlagged,
    PaymentProcessing,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentRefundRequested,
    PaymentRejected,
    PaymentRequested,
    PaymentSucceeded,
)
from payments_platform.messaging import Delivery
from status_projector.domain.model import Park
from status_projector.domain.status import PaymentState
from status_projector.projection_batch import InvoiceKey, Position, ProjectionBatch

from .invoices import (
    on_invoice_balance_changed,
    on_invoice_closed,
    on_invoice_registered,
    on_invoice_registration_failed,
    on_invoice_synced,
)
from .payments import (
    Handler,
    ended,
    on_account_balance_payment_changed,
    on_checkout_opened,
    on_invoice_restriction_changed,
    on_payment_flagged,
    on_payment_processing,
    on_payment_rejected,
    on_payment_requested,
    on_payment_succeeded,
    refund,
    uuid_text,
)

_BY_CLASS: dict[type[Envelope], Handler] = {
    InvoiceSynced: on_invoice_synced,
    InvoiceBalanceChanged: on_invoice_balance_changed,
    InvoiceRegistered: on_invoice_registered,
    InvoiceRegistrationFailed: on_invoice_registration_failed,
    InvoiceClosed: on_invoice_closed,
    PaymentRequested: on_payment_requested,
    CheckoutOpened: on_checkout_opened,
    PaymentProcessing: on_payment_processing,
    PaymentSucceeded: on_payment_succeeded,
    PaymentFailed: ended(PaymentState.FAILED),
    PaymentCancelled: ended(PaymentState.CANCELLED),
    PaymentExpired: ended(PaymentState.EXPIRED),
    PaymentRejected: on_payment_rejected,
    PaymentFlagged: on_payment_flagged,
    InvoiceRestrictionChanged: on_invoice_restriction_changed,
    PaymentRefundRequested: refund("requested"),
    PaymentRefunded: refund("refunded"),
    PaymentRefundFailed: refund("failed"),
    AccountBalancePaymentChanged: on_account_balance_payment_changed,
}


def _type(model: type[Envelope]) -> str:
    return str(model.model_fields["type"].default)


# By the message's `type`, not its class: the live projection decodes into msgspec Structs
# of the contracts' shapes (payments_platform.messaging.fast_decoding), the handler unit
# tests build the pydantic models, and both carry the same `type` and fields.
# The rules' edition: raised whenever a handler or a domain rule changes what a row holds,
# so a rebuild never starts from a snapshot the earlier rules made
# (docs/decisions/0046-rebuild-from-snapshots-in-parallel.md).
RULES = "1"
HANDLERS: dict[str, Handler] = {_type(model): handler for model, handler in _BY_CLASS.items()}
_INVOICE_EVENTS = frozenset(_type(m) for m in typing.get_args(typing.get_args(InvoiceEvent)[0]))
_REJECTED, _REQUESTED, _SUCCEEDED = _type(PaymentRejected), _type(PaymentRequested), _type(PaymentSucceeded)
_RESTRICTION = _type(InvoiceRestrictionChanged)


def needs(message: Envelope, keys: set[InvoiceKey], payments: set[str]) -> None:
    """Add the invoices and payments an event reads (payments' invoices come on load)."""
    kind = message.type
    payload: Any = message.payload
    account = message.account_id
    if kind == _REJECTED:
        keys.update((account, n) for n in payload.invoice_numbers)
    elif kind in (_REQUESTED, _SUCCEEDED):
        keys.update((account, a.invoice_number) for a in payload.allocations)
        payments.add(uuid_text(payload.payment_id))
    elif kind in _INVOICE_EVENTS or kind == _RESTRICTION:
        keys.add((account, payload.invoice_number))
    else:
        payment_id = getattr(payload, "payment_id", None)
        if payment_id is not None:
            payments.add(uuid_text(payment_id))


async def _load_for(batch: ProjectionBatch, messages: Sequence[Envelope]) -> None:
    keys: set[InvoiceKey] = set()
    payments: set[str] = set()
    for message in messages:
        needs(message, keys, payments)
    await batch.load(keys, payments)


def apply(message: Envelope, position: Position, batch: ProjectionBatch) -> bool:
    """Apply one event; False when it was parked."""
    handler = HANDLERS.get(message.type)
    if handler is None:
        return True
    try:
        handler(message, batch)
    except Park as why:
        batch.park(message, position, why)
        return False
    batch.saw(message.occurred_at)
    return True


async def retry_parked(batch: ProjectionBatch) -> None:
    """Apply parked events whose invoice or payment appeared, until nothing more moves."""
    while keys := batch.appeared():
        waiting = await batch.parked_for(keys)
        if not waiting:
            continue
        messages = [batch.parked_message(e) for e in waiting]
        await _load_for(batch, messages)
        for event, message in zip(waiting, messages, strict=True):
            if apply(message, event.position, batch):
                batch.unpark(event)


async def apply_batch(deliveries: Sequence[Delivery], batch: ProjectionBatch) -> None:
    """Apply the events delivered, retry what they unblock, and commit.

    The topics have no order between them; invoice events first within a batch means
    fewer payment events park only to be retried a moment later. The order inside
    each partition is kept (the sort is stable).
    """
    invoices = _INVOICE_EVENTS
    ordered = sorted(deliveries, key=lambda d: d.message.type not in invoices)
    await _load_for(batch, [d.message for d in ordered])
    for d in ordered:
        apply(d.message, (d.topic, d.partition, d.offset), batch)
    await retry_parked(batch)
    # Once per changed invoice and batch, not per event: balance and pay status follow
    # from the facts the events left.
    for invoice in batch.changed_invoices():
        invoice.refresh()
    await batch.commit()
