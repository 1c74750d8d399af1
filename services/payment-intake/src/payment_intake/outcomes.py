"""The messages payment-intake publishes on `payments.events`, built from its own records."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from payment_intake.adapters.postgres import Payment
from payment_intake.adapters.refunds import Refund
from payment_intake.domain.payment import PaymentStatus
from payments_shared.contracts import Envelope
from payments_shared.contracts.payments import (
    Allocation,
    CheckoutOpened,
    CheckoutOpenedPayload,
    PaymentCancelled,
    PaymentEndedPayload,
    PaymentExpired,
    PaymentFailed,
    PaymentFlagged,
    PaymentFlaggedPayload,
    PaymentProcessing,
    PaymentProcessingPayload,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentRefundRequested,
    PaymentSucceeded,
    PaymentSucceededPayload,
    RefundedPayload,
    RefundFailedPayload,
    RefundRequestedPayload,
)
from payments_shared.domain.card_numbers import redact_card_numbers
from payments_shared.domain.money import Money

SERVICE = "payment-intake"

_ENDED: dict[PaymentStatus, type[PaymentFailed | PaymentCancelled | PaymentExpired]] = {
    PaymentStatus.FAILED: PaymentFailed,
    PaymentStatus.CANCELLED: PaymentCancelled,
    PaymentStatus.EXPIRED: PaymentExpired,
}
_END_MESSAGES = {
    PaymentStatus.FAILED: "The payment did not go through. The invoice can be paid again.",
    PaymentStatus.CANCELLED: "The checkout was cancelled. The invoice can be paid again.",
    PaymentStatus.EXPIRED: "The checkout was not completed in time. The invoice can be paid again.",
}


def allocations_of(payment: Payment) -> list[Allocation]:
    return [
        Allocation(invoice_number=n, amount=Money(amount_minor=a, currency=payment.currency))
        for n, a in payment.allocations
    ]


def _header(payment: Payment, cause: UUID | None) -> dict[str, object]:
    # Every outcome carries the command's correlation id, so a portal can follow its payment.
    return {
        "producer": SERVICE,
        "correlation_id": payment.correlation_id,
        "causation_id": cause,
        "account_id": payment.account_id,
    }


def transition_outcome(
    payment: Payment,
    to: PaymentStatus,
    *,
    cause: UUID | None,
    reason_code: str | None = None,
    detail: str | None = None,
    provider_payment_ref: str | None = None,
) -> Envelope:
    if to is PaymentStatus.PROCESSING:
        return PaymentProcessing(
            **_header(payment, cause),  # type: ignore[arg-type]
            payload=PaymentProcessingPayload(payment_id=payment.payment_id),
        )
    if to is PaymentStatus.SUCCEEDED:
        return PaymentSucceeded(
            **_header(payment, cause),  # type: ignore[arg-type]
            payload=PaymentSucceededPayload(
                payment_id=payment.payment_id,
                amount=Money(amount_minor=payment.total_minor, currency=payment.currency),
                allocations=allocations_of(payment),
                provider_payment_ref=provider_payment_ref,
            ),
        )
    message = _END_MESSAGES[to]
    if detail:
        message = f"{message} ({redact_card_numbers(detail)[:200]})"
    return _ENDED[to](
        **_header(payment, cause),  # type: ignore[arg-type]
        payload=PaymentEndedPayload(
            payment_id=payment.payment_id,
            reason_code=reason_code or to.value,
            message=message,
        ),
    )


def checkout_opened(payment: Payment, *, checkout_id: str, url: str, expires_at: datetime) -> CheckoutOpened:
    return CheckoutOpened(
        **_header(payment, payment.command_event_id),  # type: ignore[arg-type]
        payload=CheckoutOpenedPayload(
            payment_id=payment.payment_id,
            checkout_id=checkout_id,
            checkout_url=url,
            expires_at=expires_at,
        ),
    )


def flagged(
    *,
    payment_id: UUID | None,
    account_id: str,
    correlation_id: UUID,
    cause: UUID | None,
    reason_code: str,
    message: str,
) -> PaymentFlagged:
    return PaymentFlagged(
        producer=SERVICE,
        correlation_id=correlation_id,
        causation_id=cause,
        account_id=account_id,
        payload=PaymentFlaggedPayload(payment_id=payment_id, reason_code=reason_code, message=message),
    )


def _refund_money(refund: Refund) -> Money:
    return Money(amount_minor=refund.amount_minor, currency=refund.currency)


def refund_requested(payment: Payment, refund: Refund, *, message: str, cause: UUID | None) -> Envelope:
    return PaymentRefundRequested(
        **_header(payment, cause),  # type: ignore[arg-type]
        payload=RefundRequestedPayload(
            payment_id=payment.payment_id,
            refund_id=refund.refund_id,
            amount=_refund_money(refund),
            invoice_numbers=[n for n, _ in payment.allocations],
            reason_code=refund.reason_code,  # type: ignore[arg-type]
            message=message,
            requested_by=refund.requested_by,  # type: ignore[arg-type]
        ),
    )


def refunded(
    payment: Payment, refund: Refund, *, provider_refund_id: str | None, cause: UUID | None
) -> Envelope:
    return PaymentRefunded(
        **_header(payment, cause),  # type: ignore[arg-type]
        payload=RefundedPayload(
            payment_id=payment.payment_id,
            refund_id=refund.refund_id,
            amount=_refund_money(refund),
            invoice_numbers=[n for n, _ in payment.allocations],
            provider_refund_id=provider_refund_id,
        ),
    )


def refund_failed(
    payment: Payment, refund: Refund, *, reason_code: str, message: str, cause: UUID | None
) -> Envelope:
    return PaymentRefundFailed(
        **_header(payment, cause),  # type: ignore[arg-type]
        payload=RefundFailedPayload(
            payment_id=payment.payment_id,
            refund_id=refund.refund_id,
            amount=_refund_money(refund),
            invoice_numbers=[n for n, _ in payment.allocations],
            reason_code=reason_code,
            message=redact_card_numbers(message)[:300],
        ),
    )
