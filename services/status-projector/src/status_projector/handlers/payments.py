"""Payment events (from payment-intake): a payment's life, refunds, and the merchant
policy's word on an invoice or an account.

A handler first checks that everything it needs exists, then changes state; when
something is missing it raises `Park` before changing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from payments_contracts import Envelope
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
from status_projector.domain.model import (
    AccountPolicy,
    Park,
    Payment,
    Problem,
    Refund,
    Restriction,
    payment_key,
)
from status_projector.domain.status import PaymentState, Transition, transition
from status_projector.projection_batch import ProjectionBatch

# Plain functions, not coroutines: a handler never waits (the batch loaded everything
# it reads), and a coroutine per event is a cost paid millions of times in a rebuild.
Handler = Callable[[Any, ProjectionBatch], None]

# A UUID as its text, as str() writes it, in C: UUID.__str__ formats in Python, 0.52
# against 0.16 µs, twice per payment event (5% of the projector's in-process CPU,
# bench/projector_micro.py).
uuid_text: Callable[[Any], str] = msgspec.to_builtins


def on_payment_requested(message: PaymentRequested, batch: ProjectionBatch) -> None:
    p = message.payload
    payment_id = uuid_text(p.payment_id)
    invoices = [
        (batch.require_invoice(message.account_id, a.invoice_number), a.amount.amount_minor)
        for a in p.allocations
    ]
    payment = batch.payment(payment_id)
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
        batch.add_payment(payment)
    for invoice, amount in invoices:
        invoice.follow_payment(payment_id, payment.state, amount, payment.requested_at)
        invoice.touched(message.occurred_at)
        batch.changed(invoice)


def _payment_moved(
    message: Envelope,
    payment_id: str,
    new: PaymentState,
    batch: ProjectionBatch,
    *,
    succeeded: dict[str, int] | None = None,
    problem: Problem | None = None,
) -> None:
    payment = batch.payment(payment_id)
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
    invoices = [batch.require_invoice(payment.account_id, n) for n in sorted(numbers)]
    payment.state = new
    payment.state_at = message.occurred_at
    batch.payment_changed(payment)
    for invoice in invoices:
        if succeeded is not None and invoice.invoice_number in succeeded:
            invoice.succeeded[payment_id] = succeeded[invoice.invoice_number]
        if problem is not None and invoice.invoice_number in payment.allocations:
            invoice.note_problem(problem)
        if invoice.current_payment_id == payment_id:
            invoice.current_payment_state = new
        invoice.touched(message.occurred_at)
        batch.changed(invoice)


def on_checkout_opened(message: CheckoutOpened, batch: ProjectionBatch) -> None:
    _payment_moved(message, uuid_text(message.payload.payment_id), PaymentState.CHECKOUT_OPEN, batch)


def on_payment_processing(message: PaymentProcessing, batch: ProjectionBatch) -> None:
    _payment_moved(message, uuid_text(message.payload.payment_id), PaymentState.PROCESSING, batch)


def on_payment_succeeded(message: PaymentSucceeded, batch: ProjectionBatch) -> None:
    p = message.payload
    allocated = {a.invoice_number: a.amount.amount_minor for a in p.allocations}
    _payment_moved(message, uuid_text(p.payment_id), PaymentState.SUCCEEDED, batch, succeeded=allocated)


def ended(state: PaymentState) -> Handler:
    def on_payment_ended(
        message: PaymentFailed | PaymentCancelled | PaymentExpired, batch: ProjectionBatch
    ) -> None:
        p = message.payload
        problem = Problem(p.reason_code, p.message, message.occurred_at)
        _payment_moved(message, uuid_text(p.payment_id), state, batch, problem=problem)

    return on_payment_ended


def on_payment_rejected(message: PaymentRejected, batch: ProjectionBatch) -> None:
    p = message.payload
    invoices = [batch.require_invoice(message.account_id, n) for n in sorted(set(p.invoice_numbers))]
    problem = Problem(p.reason_code, p.message, message.occurred_at)
    for invoice in invoices:
        invoice.note_problem(problem)
        invoice.touched(message.occurred_at)
        batch.changed(invoice)


def on_invoice_restriction_changed(message: InvoiceRestrictionChanged, batch: ProjectionBatch) -> None:
    """Payment-intake owns the merchant's policy and says when an invoice may not be paid
    online; before its invoice is known the event parks and applies when it appears."""
    p = message.payload
    invoice = batch.require_invoice(message.account_id, p.invoice_number)
    invoice.restrict(Restriction(p.restricted, p.reason_code, p.message, message.occurred_at))
    invoice.touched(message.occurred_at)
    batch.changed(invoice)


def refund(state: str) -> Handler:
    def on_refund(
        message: PaymentRefundRequested | PaymentRefunded | PaymentRefundFailed, batch: ProjectionBatch
    ) -> None:
        """Shown on the payment's invoices; the balance does not change (the money was
        never counted as paid: payment-intake never announced it as succeeded)."""
        p = message.payload
        payment_id = uuid_text(p.payment_id)
        payment = batch.payment(payment_id)
        if payment is None:
            raise Park(f"unknown payment {payment_id}", payment_key(payment_id))
        invoices = [batch.require_invoice(payment.account_id, n) for n in sorted(payment.allocations)]
        reason = getattr(p, "reason_code", None)
        refund = Refund(payment_id, state, p.amount.amount_minor, reason, message.occurred_at)
        for invoice in invoices:
            invoice.note_refund(refund)
            if message.type == "payment.refund_failed":  # a Struct or the model (handlers/__init__.py)
                failed = message.payload
                invoice.note_problem(Problem(failed.reason_code, failed.message, message.occurred_at))
            invoice.touched(message.occurred_at)
            batch.changed(invoice)

    return on_refund


def on_account_balance_payment_changed(message: AccountBalancePaymentChanged, batch: ProjectionBatch) -> None:
    """Payment-intake owns the policy: whether the account-level PAY button may show."""
    p = message.payload
    batch.account_policy(
        AccountPolicy(message.account_id, p.allowed, p.reason_code, p.message, message.occurred_at)
    )


def on_payment_flagged(message: PaymentFlagged, batch: ProjectionBatch) -> None:
    """For operators; a flag does not change what the portal shows."""
