"""The customer cancels a checkout: answered `payment.cancelled` or `payment.rejected`."""

from __future__ import annotations

from payment_intake.domain.intake import CARD_NUMBER_REJECTION
from payment_intake.domain.payment import Happening, PaymentStatus, apply
from payment_intake.domain.rejections import Reason, Rejection
from payment_intake.handlers.answers import answer_once, answered_before, keyed
from payment_intake.messages import cancelled_by_customer, rejected
from payment_intake.unit_of_work import UnitOfWork
from payments_contracts.payments import CancelCheckout

UNKNOWN_PAYMENT = Rejection(Reason.UNKNOWN_PAYMENT, "We could not find this payment.")


async def on_cancel_checkout(command: CancelCheckout, uow: UnitOfWork) -> None:
    cancel = keyed(command, command.payload.idempotency_key)
    if await answered_before(uow, cancel):
        return
    if cancel.carded:
        await answer_once(uow, cancel, rejected(command, cancel.key, CARD_NUMBER_REJECTION))
        return
    payment = await uow.payments.get_for_update(command.payload.payment_id)
    if payment is None or payment.account_id != command.account_id:
        await answer_once(uow, cancel, rejected(command, cancel.key, UNKNOWN_PAYMENT))
        return
    if apply(payment.status, Happening.CANCELLED).to is None:
        too_late = Rejection(
            Reason.CANNOT_CANCEL,
            f"This payment can no longer be cancelled: it is {payment.status.value.replace('_', ' ')}.",
            tuple(n for n, _ in payment.allocations),
        )
        await answer_once(uow, cancel, rejected(command, cancel.key, too_late))
        return
    await uow.payments.move(payment.payment_id, PaymentStatus.CANCELLED, reason="customer_cancelled")
    await uow.checkouts.cancel_at_provider(payment.payment_id)
    await answer_once(uow, cancel, cancelled_by_customer(command, payment.payment_id))
