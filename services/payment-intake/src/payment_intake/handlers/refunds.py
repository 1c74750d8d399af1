"""Asking for money back and recording the provider's answer: one refund per payment,
its events published in the same transaction as the row that says so."""

from __future__ import annotations

import logging
from uuid import UUID, uuid4

from payment_intake.domain.payment import Payment, PaymentStatus
from payment_intake.domain.refunds import MESSAGES, OPEN_REFUND, NotRefundable, Refund, refund_reason
from payment_intake.messages import refund_failed, refund_requested, refunded, transition_outcome
from payment_intake.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


async def flag_money(uow: UnitOfWork, payment: Payment, flag_code: str, *, cause: UUID | None) -> None:
    """A flag about money the provider took: remember why, and refund it if the policy says so."""
    reason = refund_reason(
        flag_code, invoice_already_paid=await uow.payments.invoices_paid_by_others(payment)
    )
    if reason is None:
        return
    await uow.payments.flag(payment.payment_id, reason)
    if not uow.config.policies.for_account(payment.account_id).auto_refund:
        log.warning("money to refund; waiting for an operator", extra={"payment_id": str(payment.payment_id)})
        return
    current = await uow.payments.get_for_update(payment.payment_id)
    if current is not None:
        await request_refund(uow, current, reason, requested_by="policy", cause=cause)


async def refund_by_operator(uow: UnitOfWork, payment_id: UUID) -> UUID:
    """An operator's refund of a flagged payment; the refund's id."""
    payment = await uow.payments.get_for_update(payment_id)
    if payment is None:
        raise NotRefundable(f"no payment {payment_id}")
    if payment.flag_reason is None:
        raise NotRefundable(f"payment {payment_id} is not flagged: its money is the invoice's")
    created = await request_refund(uow, payment, payment.flag_reason, requested_by="ops", cause=None)
    if created is None:
        raise NotRefundable(f"payment {payment_id} already has a refund under way or done")
    return created.refund_id


async def request_refund(
    uow: UnitOfWork, payment: Payment, reason_code: str, *, requested_by: str, cause: UUID | None
) -> Refund | None:
    """Store the refund and announce it; None when the payment already has an open or
    settled refund (a failed one is asked for again, under a new id)."""
    refund_id = uuid4()
    amount = payment.confirmed_minor if payment.confirmed_minor else payment.total_minor
    created = await uow.refunds.request(
        refund_id=refund_id,
        payment_id=payment.payment_id,
        account_id=payment.account_id,
        amount_minor=amount,
        currency=payment.confirmed_currency or payment.currency,
        reason_code=reason_code,
        requested_by=requested_by,
    )
    if not created and not await uow.refunds.reopen_failed(payment.payment_id, refund_id, requested_by):
        return None
    refund = await uow.refunds.get_for_update(refund_id)
    assert refund is not None
    uow.publish(refund_requested(payment, refund, message=MESSAGES[reason_code], cause=cause))
    log.info("refund requested", extra={"payment_id": str(payment.payment_id), "reason": reason_code})
    return refund


async def settle_refund(
    uow: UnitOfWork,
    refund: Refund,
    *,
    succeeded: bool,
    provider_refund_id: str | None,
    reason: str | None,
    cause: UUID | None,
) -> bool:
    """The provider's last word on a refund (webhook or status query); once only."""
    if refund.status not in OPEN_REFUND:
        return False
    payment = await uow.payments.get_for_update(refund.payment_id)
    assert payment is not None
    if not succeeded:
        await uow.refunds.settle(refund.refund_id, "failed", failure=reason or "refund_failed")
        uow.publish(
            refund_failed(
                payment,
                refund,
                reason_code=reason or "refund_failed",
                message="The provider did not refund the payment; an operator will follow up.",
                cause=cause,
            )
        )
        return True
    await uow.refunds.settle(refund.refund_id, "refunded")
    uow.publish(
        refunded(
            payment, refund, provider_refund_id=provider_refund_id or refund.provider_refund_id, cause=cause
        )
    )
    if payment.status is PaymentStatus.PROCESSING:
        # Held pending for an operator (amount mismatch); the money is back, so the
        # payment did not happen and the invoice can be paid again.
        await uow.payments.move(payment.payment_id, PaymentStatus.FAILED, reason="refunded")
        uow.publish(
            transition_outcome(
                payment,
                PaymentStatus.FAILED,
                cause=cause,
                reason_code=f"{refund.reason_code}_refunded",
                detail="the amount taken was refunded",
            )
        )
    return True
