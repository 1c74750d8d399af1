"""The provider worker's answers: status sync, cancel at the provider, refunds. Recorded
through the unit of work; a status-sync answer moves a payment through `provider_said`
exactly as its webhook would have (same moves, same events, same flags)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeAlias, TypeVar, Union
from uuid import UUID

from prometheus_client import Counter

from payment_intake.domain.payment import Happening, PaymentStatus, ProviderWord
from payment_intake.domain.provider import (
    CheckoutState,
    ClaimedCheckout,
    ProviderRefused,
    RefundState,
    backoff_s,
    succeeded_word,
    words_for,
)
from payment_intake.domain.refunds import Refund
from payment_intake.handlers.callbacks import provider_said
from payment_intake.handlers.checkouts import about
from payment_intake.handlers.refunds import settle_refund
from payment_intake.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

SYNCED = Counter("payment_intake_status_sync_total", "Status-sync answers", ["outcome"])
CANCELS = Counter("payment_intake_provider_cancels_total", "Cancellations at the provider", ["outcome"])
REFUND_CALLS = Counter("payment_intake_refund_calls_total", "Refund submissions and queries", ["outcome"])

T = TypeVar("T")
Answer: TypeAlias = Union[T, Exception]  # noqa: UP007 (a generic alias needs Union)
# (a refusal is a ProviderRefused, an outage any other exception)


@dataclass(frozen=True)
class Heard:
    """What status sync heard from the provider about one payment, and the payment's
    status when the answer came (None: no such payment); payment-intake-ops reconcile
    shows it next to what the payment is now."""

    payment_id: UUID
    answer: str
    status_before: str | None


def _told(answer: Answer[CheckoutState]) -> str:
    if isinstance(answer, CheckoutState):
        return answer.status + (f" ({answer.reason})" if answer.reason else "")
    if isinstance(answer, ProviderRefused):
        return f"refused: {answer.code}"
    return f"no answer: {type(answer).__name__} {str(answer)[:80]}".strip()


async def record_sync(
    uow: UnitOfWork, claimed: ClaimedCheckout, answer: Answer[CheckoutState], *, threshold_s: float
) -> Heard:
    payment = await uow.payments.get_for_update(claimed.payment_id)
    heard = Heard(claimed.payment_id, _told(answer), None if payment is None else payment.status.value)
    if payment is None or payment.status not in (PaymentStatus.CHECKOUT_OPEN, PaymentStatus.PROCESSING):
        return heard  # its webhook (or the customer, or the timer) got there first
    if isinstance(answer, ProviderRefused) and answer.code == "unknown_checkout":
        SYNCED.labels("unknown").inc()
        log.warning("status sync: the provider does not know the checkout", extra=about(payment))
        word = ProviderWord(Happening.FAILED, reason="unknown_at_provider", end_code="unknown_at_provider")
        await provider_said(uow, payment, word, cause=None, source="status-sync")
        return heard
    if isinstance(answer, Exception):
        SYNCED.labels("error").inc()
        log.warning("status sync failed; retrying later", extra={**about(payment), "error": repr(answer)})
        await uow.checkouts.sync_later(payment.payment_id, backoff_s(claimed.attempts))
        return heard
    words = words_for(payment, answer)
    SYNCED.labels(answer.status).inc()
    log.info("status sync", extra={**about(payment), "provider_status": answer.status})
    for word in words:
        current = await uow.payments.get_for_update(payment.payment_id)
        assert current is not None
        await provider_said(uow, current, word, cause=None, source="status-sync")
    if not words:  # still open at the provider: ask again a threshold later
        await uow.checkouts.sync_later(payment.payment_id, threshold_s)
    return heard


async def record_cancel(
    uow: UnitOfWork, claimed: ClaimedCheckout, answer: Answer[CheckoutState], *, threshold_s: float
) -> None:
    if isinstance(answer, CheckoutState) or (
        isinstance(answer, ProviderRefused) and answer.code == "unknown_checkout"
    ):
        CANCELS.labels("cancelled").inc()
        await uow.checkouts.cancel_done(claimed.payment_id, "done")
        return
    if isinstance(answer, ProviderRefused) and answer.code == "checkout_completed":
        state = CheckoutState.of(
            answer.detail.get("checkout") or {"checkout_id": claimed.checkout_id, "status": "processing"}
        )
        payment = await uow.payments.get_for_update(claimed.payment_id)
        if state.status != "succeeded" or payment is None:
            # Money is moving; ask again later, when it has landed (or not).
            await uow.checkouts.cancel_later(claimed.payment_id, threshold_s)
            return
        CANCELS.labels("too_late").inc()
        log.warning("checkout completed before our cancel reached the provider", extra=about(payment))
        await uow.checkouts.cancel_done(claimed.payment_id, "too_late")
        await provider_said(uow, payment, succeeded_word(payment, state), cause=None, source="cancel")
        return
    if isinstance(answer, ProviderRefused):
        CANCELS.labels("refused").inc()
        log.error(
            "the provider refused to cancel",
            extra={"payment_id": str(claimed.payment_id), "code": answer.code},
        )
        await uow.checkouts.cancel_done(claimed.payment_id, "refused")
        return
    CANCELS.labels("error").inc()
    await uow.checkouts.cancel_later(claimed.payment_id, backoff_s(claimed.attempts))


async def record_refund(
    uow: UnitOfWork, claimed: Refund, answer: Answer[RefundState], *, query_after_s: float
) -> None:
    refund = await uow.refunds.get_for_update(claimed.refund_id)
    if refund is None or refund.status not in ("requested", "submitted"):
        return  # its webhook settled it meanwhile (or an operator asked again under a new id)
    if isinstance(answer, RefundState):
        REFUND_CALLS.labels(answer.status).inc()
        if answer.status == "pending":
            await uow.refunds.submitted(
                refund.refund_id, answer.provider_refund_id or "", query_after_s=query_after_s
            )
            if refund.status == "submitted":  # asked, still pending: ask again later
                await uow.refunds.retry_later(refund.refund_id, query_after_s, "still pending")
            return
        await settle_refund(
            uow,
            refund,
            succeeded=answer.status == "succeeded",
            provider_refund_id=answer.provider_refund_id,
            reason=answer.reason,
            cause=None,
        )
        return
    if isinstance(answer, ProviderRefused):
        REFUND_CALLS.labels("refused").inc()
        log.error(
            "the provider refused a refund", extra={"refund_id": str(refund.refund_id), "code": answer.code}
        )
        await settle_refund(
            uow, refund, succeeded=False, provider_refund_id=None, reason=answer.code, cause=None
        )
        return
    REFUND_CALLS.labels("error").inc()
    await uow.refunds.retry_later(refund.refund_id, backoff_s(refund.attempts), repr(answer))
