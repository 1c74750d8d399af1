"""The checkout opener's answers and the expiry timer: recorded through the unit of work
like any message, with the events they publish."""

from __future__ import annotations

import logging
from uuid import UUID

from payment_intake.domain.payment import Happening, Payment, PaymentStatus, apply
from payment_intake.domain.provider import OpenedCheckout, ProviderRefused, backoff_s
from payment_intake.messages import checkout_opened, transition_outcome
from payment_intake.unit_of_work import UnitOfWork
from payments_platform import tracing

log = logging.getLogger(__name__)

OpenAnswer = OpenedCheckout | ProviderRefused | Exception


async def record_checkouts(uow: UnitOfWork, answers: list[tuple[Payment, OpenAnswer]]) -> None:
    """The provider's answers to a round of checkout openings."""
    current = {
        p.payment_id: p for p in await uow.payments.get_many_for_update([c.payment_id for c, _ in answers])
    }
    opened: list[tuple[UUID, str, str]] = []
    for claimed, answer in answers:
        payment = current.get(claimed.payment_id)
        if payment is None:
            continue
        if isinstance(answer, OpenedCheckout):
            with tracing.applying(payment.payment_id):  # its log line in the opening's span
                if await _opened(uow, payment, answer):
                    opened.append((payment.payment_id, answer.checkout_id, answer.url))
        elif isinstance(answer, ProviderRefused):
            await _refused(uow, payment, answer)
        else:
            delay = backoff_s(payment.open_attempts)
            log.warning(
                "checkout not opened; retrying later",
                extra={**about(payment), "retry_in_s": delay, "error": repr(answer)},
            )
            await uow.checkouts.open_later(payment.payment_id, delay)
    # One statement for the round: the opener's transaction is short, whatever its size.
    await uow.payments.checkouts_opened(opened)


async def _opened(uow: UnitOfWork, payment: Payment, checkout: OpenedCheckout) -> bool:
    """Whether the payment moves to checkout_open (announced here, stored by the caller)."""
    to = apply(payment.status, Happening.CHECKOUT_OPENED).to
    if to is None:
        # A callback, the customer or the timer got there first; keep the checkout id.
        await uow.payments.keep_checkout_id(payment.payment_id, checkout.checkout_id)
        return False
    assert to is PaymentStatus.CHECKOUT_OPEN
    log.info("checkout opened", extra={**about(payment), "checkout_id": checkout.checkout_id})
    expires_at = min(checkout.expires_at, payment.expires_at)
    uow.publish(
        checkout_opened(payment, checkout_id=checkout.checkout_id, url=checkout.url, expires_at=expires_at)
    )
    return True


async def _refused(uow: UnitOfWork, payment: Payment, refused: ProviderRefused) -> None:
    to = apply(payment.status, Happening.FAILED).to
    if to is None:
        return
    log.warning("provider refused the checkout", extra={**about(payment), "code": refused.code})
    await uow.payments.move(payment.payment_id, to, reason=f"checkout_refused:{refused.code}")
    uow.publish(
        transition_outcome(
            payment,
            to,
            cause=payment.command_event_id,
            reason_code="checkout_refused",
            detail=refused.message,
        )
    )


async def expire_due(uow: UnitOfWork, *, batch_size: int) -> int:
    """End the payments whose checkout was not completed in time; how many were due."""
    due = await uow.checkouts.expiring(batch_size=batch_size)
    for payment in due:
        if apply(payment.status, Happening.EXPIRED).to is not PaymentStatus.EXPIRED:
            continue
        await uow.payments.move(payment.payment_id, PaymentStatus.EXPIRED, reason="checkout_expired")
        await uow.checkouts.cancel_at_provider(payment.payment_id)
        uow.publish(
            transition_outcome(payment, PaymentStatus.EXPIRED, cause=None, reason_code="checkout_expired")
        )
    return len(due)


def about(payment: Payment) -> dict[str, str]:
    """Log fields tying a line to the pay command that started it."""
    return {
        "payment_id": str(payment.payment_id),
        "correlation_id": str(payment.correlation_id),
        "account_id": payment.account_id,
    }
