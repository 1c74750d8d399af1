"""One async function per event, applied to the unit of work's in-memory read model,
and the batch handler the TransactionalConsumer calls.

A handler first checks that everything it needs exists, then changes state; when
something is missing it raises `Park` before changing anything, and the event is
kept in the version's parked table until what it waits for appears.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from payments_shared.contracts import Envelope, InvoiceEvent, PaymentEvent
from payments_shared.contracts.invoices import (
    InvoiceBalanceChanged,
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)
from payments_shared.contracts.payments import (
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
from payments_shared.messaging import BatchHandler, Delivery, Transaction

from .adapters.postgres import VersionTables
from .domain.model import AccountPolicy, Invoice, Park, Payment, Problem, Refund, Restriction, payment_key
from .domain.status import PaymentState, Transition, transition
from .unit_of_work import InvoiceKey, UnitOfWork

Handler = Callable[[Any, UnitOfWork], Awaitable[None]]

# --- invoices -------------------------------------------------------------------------


async def on_invoice_synced(message: InvoiceSynced, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.invoice(message.account_id, p.invoice_number)
    if invoice is None:
        invoice = Invoice(
            account_id=message.account_id,
            invoice_number=p.invoice_number,
            currency=p.total.currency,
            order_number=p.order_number,
            po_number=p.po_number,
            invoice_date=p.invoice_date,
            due_date=p.due_date,
            total_minor=p.total.amount_minor,
            open_amount_minor=p.open_amount.amount_minor,
            erp_status=p.erp_status,
            erp_version=p.erp_version,
            billing_country=p.billing_country,
            posted_refs=sorted({pp.reference for pp in p.posted_payments}),
        )
        uow.add_invoice(invoice)
    elif p.erp_version >= invoice.erp_version:  # an older ERP version changes nothing
        invoice.currency = p.total.currency
        invoice.order_number = p.order_number
        invoice.po_number = p.po_number
        invoice.invoice_date = p.invoice_date
        invoice.due_date = p.due_date
        invoice.total_minor = p.total.amount_minor
        invoice.open_amount_minor = p.open_amount.amount_minor
        invoice.erp_status = p.erp_status
        invoice.erp_version = p.erp_version
        invoice.billing_country = p.billing_country
        invoice.posted_refs = sorted({pp.reference for pp in p.posted_payments})
        uow.changed(invoice)
    else:
        return
    invoice.touched(message.occurred_at)


async def on_invoice_balance_changed(message: InvoiceBalanceChanged, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version < invoice.erp_version:
        return
    invoice.open_amount_minor = p.open_amount.amount_minor
    invoice.erp_version = p.erp_version
    invoice.touched(message.occurred_at)
    uow.changed(invoice)


async def on_invoice_registered(message: InvoiceRegistered, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    # At the same ERP version a success is final: a replayed earlier failure of that
    # version must not undo it.
    if p.erp_version >= invoice.registration_version:
        invoice.registration = "registered"
        invoice.registration_version = p.erp_version
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


async def on_invoice_registration_failed(message: InvoiceRegistrationFailed, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version > invoice.registration_version or (
        p.erp_version == invoice.registration_version and invoice.registration != "registered"
    ):
        invoice.registration = "failed"
        invoice.registration_version = p.erp_version
        invoice.note_problem(Problem(p.reason_code, p.message, message.occurred_at))
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


async def on_invoice_closed(message: InvoiceClosed, uow: UnitOfWork) -> None:
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    if p.erp_version >= invoice.closed_version:
        invoice.closed_reason = p.reason
        invoice.closed_version = p.erp_version
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


# --- payments -------------------------------------------------------------------------


async def on_payment_requested(message: PaymentRequested, uow: UnitOfWork) -> None:
    p = message.payload
    payment_id = str(p.payment_id)
    invoices = [
        (uow.require_invoice(message.account_id, a.invoice_number), a.amount.amount_minor)
        for a in p.allocations
    ]
    payment = uow.payment(payment_id)
    if payment is None:
        payment = Payment(
            payment_id=payment_id,
            account_id=message.account_id,
            state=PaymentState.REQUESTED,
            state_at=message.occurred_at,
            requested_at=message.occurred_at,
            currency=p.total.currency,
            allocations={a.invoice_number: a.amount.amount_minor for a in p.allocations},
        )
        uow.add_payment(payment)
    for invoice, amount in invoices:
        invoice.follow_payment(payment_id, payment.state, amount, payment.requested_at)
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


async def _payment_moved(
    message: Envelope,
    payment_id: str,
    new: PaymentState,
    uow: UnitOfWork,
    *,
    succeeded: dict[str, int] | None = None,
    problem: Problem | None = None,
) -> None:
    payment = uow.payment(payment_id)
    if payment is None:
        raise Park(f"unknown payment {payment_id}", payment_key(payment_id))
    if message.occurred_at < payment.state_at:
        return  # replayed older event
    step = transition(payment.state, new)
    if step is Transition.NO_OP:
        return
    if step is Transition.IMPOSSIBLE:
        raise Park(f"impossible transition {payment.state} -> {new}", f"transition:{payment_id}")
    numbers = set(payment.allocations) | set(succeeded or {})
    invoices = [uow.require_invoice(payment.account_id, n) for n in sorted(numbers)]
    payment.state = new
    payment.state_at = message.occurred_at
    uow.payment_changed(payment)
    for invoice in invoices:
        if succeeded is not None and invoice.invoice_number in succeeded:
            invoice.succeeded[payment_id] = succeeded[invoice.invoice_number]
        if problem is not None and invoice.invoice_number in payment.allocations:
            invoice.note_problem(problem)
        if invoice.current_payment_id == payment_id:
            invoice.current_payment_state = new
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


async def on_checkout_opened(message: CheckoutOpened, uow: UnitOfWork) -> None:
    await _payment_moved(message, str(message.payload.payment_id), PaymentState.CHECKOUT_OPENED, uow)


async def on_payment_processing(message: PaymentProcessing, uow: UnitOfWork) -> None:
    await _payment_moved(message, str(message.payload.payment_id), PaymentState.PROCESSING, uow)


async def on_payment_succeeded(message: PaymentSucceeded, uow: UnitOfWork) -> None:
    p = message.payload
    allocated = {a.invoice_number: a.amount.amount_minor for a in p.allocations}
    await _payment_moved(message, str(p.payment_id), PaymentState.SUCCEEDED, uow, succeeded=allocated)


def _ended(state: PaymentState) -> Handler:
    async def on_payment_ended(
        message: PaymentFailed | PaymentCancelled | PaymentExpired, uow: UnitOfWork
    ) -> None:
        p = message.payload
        problem = Problem(p.reason_code, p.message, message.occurred_at)
        await _payment_moved(message, str(p.payment_id), state, uow, problem=problem)

    return on_payment_ended


async def on_payment_rejected(message: PaymentRejected, uow: UnitOfWork) -> None:
    p = message.payload
    invoices = [uow.require_invoice(message.account_id, n) for n in sorted(set(p.invoice_numbers))]
    problem = Problem(p.reason_code, p.message, message.occurred_at)
    for invoice in invoices:
        invoice.note_problem(problem)
        invoice.touched(message.occurred_at)
        uow.changed(invoice)


async def on_invoice_restriction_changed(message: InvoiceRestrictionChanged, uow: UnitOfWork) -> None:
    """Payment-intake owns the merchant's policy and says when an invoice may not be paid
    online; before its invoice is known the event parks and applies when it appears."""
    p = message.payload
    invoice = uow.require_invoice(message.account_id, p.invoice_number)
    invoice.restrict(Restriction(p.restricted, p.reason_code, p.message, message.occurred_at))
    invoice.touched(message.occurred_at)
    uow.changed(invoice)


def _refund(state: str) -> Handler:
    async def on_refund(
        message: PaymentRefundRequested | PaymentRefunded | PaymentRefundFailed, uow: UnitOfWork
    ) -> None:
        """Shown on the payment's invoices; the balance does not change (the money was
        never counted as paid: payment-intake never announced it as succeeded)."""
        p = message.payload
        payment_id = str(p.payment_id)
        payment = uow.payment(payment_id)
        if payment is None:
            raise Park(f"unknown payment {payment_id}", payment_key(payment_id))
        invoices = [uow.require_invoice(payment.account_id, n) for n in sorted(payment.allocations)]
        reason = getattr(p, "reason_code", None)
        refund = Refund(payment_id, state, p.amount.amount_minor, reason, message.occurred_at)
        for invoice in invoices:
            invoice.note_refund(refund)
            if isinstance(message, PaymentRefundFailed):
                invoice.note_problem(Problem(p.reason_code, p.message, message.occurred_at))
            invoice.touched(message.occurred_at)
            uow.changed(invoice)

    return on_refund


async def on_account_balance_payment_changed(message: AccountBalancePaymentChanged, uow: UnitOfWork) -> None:
    """Payment-intake owns the policy: whether the account-level PAY button may show."""
    p = message.payload
    uow.account_policy(
        AccountPolicy(message.account_id, p.allowed, p.reason_code, p.message, message.occurred_at)
    )


async def on_payment_flagged(message: PaymentFlagged, uow: UnitOfWork) -> None:
    """For operators; a flag does not change what the portal shows."""


HANDLERS: dict[type[Envelope], Handler] = {
    InvoiceSynced: on_invoice_synced,
    InvoiceBalanceChanged: on_invoice_balance_changed,
    InvoiceRegistered: on_invoice_registered,
    InvoiceRegistrationFailed: on_invoice_registration_failed,
    InvoiceClosed: on_invoice_closed,
    PaymentRequested: on_payment_requested,
    CheckoutOpened: on_checkout_opened,
    PaymentProcessing: on_payment_processing,
    PaymentSucceeded: on_payment_succeeded,
    PaymentFailed: _ended(PaymentState.FAILED),
    PaymentCancelled: _ended(PaymentState.CANCELLED),
    PaymentExpired: _ended(PaymentState.EXPIRED),
    PaymentRejected: on_payment_rejected,
    PaymentFlagged: on_payment_flagged,
    InvoiceRestrictionChanged: on_invoice_restriction_changed,
    PaymentRefundRequested: _refund("requested"),
    PaymentRefunded: _refund("refunded"),
    PaymentRefundFailed: _refund("failed"),
    AccountBalancePaymentChanged: on_account_balance_payment_changed,
}

# (Exact types, not isinstance: the message classes' metaclass makes isinstance slow.)
_INVOICE_EVENTS = frozenset(typing.get_args(typing.get_args(InvoiceEvent)[0]))

# --- what a batch needs loaded ------------------------------------------------------------


def needs(message: Envelope, keys: set[InvoiceKey], payments: set[str]) -> None:
    """Add the invoices and payments an event reads (payments' invoices come on load)."""
    kind = type(message)
    payload: Any = message.payload
    account = message.account_id
    if kind is PaymentRejected:
        keys.update((account, n) for n in payload.invoice_numbers)
    elif kind is PaymentRequested or kind is PaymentSucceeded:
        keys.update((account, a.invoice_number) for a in payload.allocations)
        payments.add(str(payload.payment_id))
    elif kind in _INVOICE_EVENTS or kind is InvoiceRestrictionChanged:
        keys.add((account, payload.invoice_number))
    else:
        payment_id = getattr(payload, "payment_id", None)
        if payment_id is not None:
            payments.add(str(payment_id))


async def _load_for(uow: UnitOfWork, messages: Sequence[Envelope]) -> None:
    keys: set[InvoiceKey] = set()
    payments: set[str] = set()
    for message in messages:
        needs(message, keys, payments)
    await uow.load(keys, payments)


# Parked events come back from the database as JSON of either topic's messages.
_EVENT_TYPES = tuple(
    t for union in (InvoiceEvent, PaymentEvent) for t in typing.get_args(typing.get_args(union)[0])
)
_ANY_EVENT: TypeAdapter[Envelope] = TypeAdapter(
    Annotated[typing.Union[_EVENT_TYPES], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
)


async def apply(message: Envelope, position: tuple[str, int, int], uow: UnitOfWork) -> bool:
    """Apply one event; False when it was parked."""
    handler = HANDLERS.get(type(message))
    if handler is None:
        return True
    try:
        await handler(message, uow)
    except Park as why:
        uow.park(message, position, why)
        return False
    uow.saw(message.occurred_at)
    return True


async def retry_parked(uow: UnitOfWork) -> None:
    """Apply parked events whose invoice or payment appeared, until nothing more moves."""
    while uow.appeared:
        keys, uow.appeared = uow.appeared, set()
        candidates = {e.event_id: e for e in uow.parked.values() if e.waits_for in keys}
        for e in await uow.store.parked_waiting_for(keys):
            if e.event_id not in uow.unparked:
                candidates.setdefault(e.event_id, e)
        if not candidates:
            continue
        ordered = sorted(candidates.values(), key=lambda e: e.position)
        decoded = uow.decoded
        messages = [decoded.pop(e.event_id, None) or _ANY_EVENT.validate_json(e.envelope) for e in ordered]
        await _load_for(uow, messages)
        for event, message in zip(ordered, messages, strict=True):
            uow.parked.pop(event.event_id, None)
            if await apply(message, event.position, uow):
                uow.applied_parked(event)


def projecting(tables: VersionTables, *, bulk: bool = False) -> BatchHandler:
    """The batch handler projecting into one version of the read model.

    `bulk` (a rebuild filling a new version): commits do not wait for the WAL flush.
    """

    decoded: dict[object, Envelope] = {}

    async def handle(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        uow = UnitOfWork(tx, tables, decoded)
        await uow.store.lock(bulk=bulk)
        # The topics have no order between them; invoice events first within a batch
        # means fewer payment events park only to be retried a moment later. The order
        # inside each partition is kept (the sort is stable).
        invoices = _INVOICE_EVENTS
        ordered = sorted(deliveries, key=lambda d: type(d.message) not in invoices)
        await _load_for(uow, [d.message for d in ordered])
        for d in ordered:
            await apply(d.message, (d.topic, d.partition, d.offset), uow)
        await retry_parked(uow)
        await uow.flush()

    return handle
