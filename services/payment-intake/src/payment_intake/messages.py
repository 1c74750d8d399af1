"""Builders of everything payment-intake publishes on `payments.events`: the answers to
commands, a payment's moves, flags and refunds, and what the read model learns from the
policy owner."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cached_property, partial
from typing import Any
from uuid import UUID

from payment_intake.domain.commands import StoredCommand
from payment_intake.domain.intake import Accepted
from payment_intake.domain.payment import Payment, PaymentStatus
from payment_intake.domain.refunds import Refund
from payment_intake.domain.rejections import Rejection
from payment_intake.domain.remittance import RemittanceAnswer
from payment_intake.settings import SERVICE
from payments_contracts import Envelope
from payments_contracts.card_numbers import redact_card_numbers
from payments_contracts.money import Money
from payments_contracts.payments import (
    AccountBalancePaymentChanged,
    AccountBalancePaymentChangedPayload,
    Allocation,
    CheckoutOpened,
    CheckoutOpenedPayload,
    InvoiceRestrictionChanged,
    InvoiceRestrictionChangedPayload,
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
    PaymentRejected,
    PaymentRejectedPayload,
    PaymentRequested,
    PaymentRequestedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
    RefundedPayload,
    RefundFailedPayload,
    RefundRequestedPayload,
    RemittanceInstructions,
    RemittanceInstructionsPayload,
)

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
            **_header(payment, cause),
            payload=PaymentProcessingPayload(payment_id=payment.payment_id),
        )
    if to is PaymentStatus.SUCCEEDED:
        return PaymentSucceeded(
            **_header(payment, cause),
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
        **_header(payment, cause),
        payload=PaymentEndedPayload(
            payment_id=payment.payment_id,
            reason_code=reason_code or to.value,
            message=message,
        ),
    )


def checkout_opened(payment: Payment, *, checkout_id: str, url: str, expires_at: datetime) -> CheckoutOpened:
    return CheckoutOpened(
        **_header(payment, payment.command_event_id),
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
        **_header(payment, cause),
        payload=RefundRequestedPayload(
            payment_id=payment.payment_id,
            refund_id=refund.refund_id,
            amount=_refund_money(refund),
            invoice_numbers=[n for n, _ in payment.allocations],
            reason_code=refund.reason_code,
            message=message,
            requested_by=refund.requested_by,
        ),
    )


def refunded(
    payment: Payment, refund: Refund, *, provider_refund_id: str | None, cause: UUID | None
) -> Envelope:
    return PaymentRefunded(
        **_header(payment, cause),
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
        **_header(payment, cause),
        payload=RefundFailedPayload(
            payment_id=payment.payment_id,
            refund_id=refund.refund_id,
            amount=_refund_money(refund),
            invoice_numbers=[n for n, _ in payment.allocations],
            reason_code=reason_code,
            message=redact_card_numbers(message)[:300],
        ),
    )


# --- answers to commands -------------------------------------------------------------------


def rejected(command: Envelope, key: str, rejection: Rejection) -> PaymentRejected:
    return PaymentRejected.following(
        command,
        producer=SERVICE,
        payload=PaymentRejectedPayload(
            idempotency_key=key,
            command_type=command.type,
            reason_code=rejection.reason.value,
            message=rejection.message,
            invoice_numbers=list(rejection.invoice_numbers),
        ),
    )


def requested(command: Envelope, key: str, payment_id: UUID, accepted: Accepted) -> PaymentRequested:
    money = partial(Money, currency=accepted.currency)
    return PaymentRequested.following(
        command,
        producer=SERVICE,
        payload=PaymentRequestedPayload(
            payment_id=payment_id,
            idempotency_key=key,
            scope=accepted.scope,
            method=accepted.method,
            allocations=[
                Allocation(invoice_number=n, amount=money(amount_minor=a)) for n, a in accepted.allocations
            ],
            total=money(amount_minor=accepted.total_minor),
        ),
    )


def remittance_instructions(command: Envelope, key: str, answer: RemittanceAnswer) -> RemittanceInstructions:
    """The command's one answer: the details, the amount and the reference to quote."""
    accepted = answer.accepted
    money = partial(Money, currency=accepted.currency)
    return RemittanceInstructions.following(
        command,
        producer=SERVICE,
        payload=RemittanceInstructionsPayload(
            idempotency_key=key,
            command_type=command.type,
            channel=answer.channel,
            amount=money(amount_minor=accepted.total_minor),
            allocations=[
                Allocation(invoice_number=n, amount=money(amount_minor=a)) for n, a in accepted.allocations
            ],
            reference=answer.reference,
            details=answer.details,
            message=answer.message,
        ),
    )


def cancelled_by_customer(command: Envelope, payment_id: UUID) -> PaymentCancelled:
    return PaymentCancelled.following(
        command,
        producer=SERVICE,
        payload=PaymentEndedPayload(
            payment_id=payment_id,
            reason_code="customer_cancelled",
            message=_END_MESSAGES[PaymentStatus.CANCELLED],
        ),
    )


class AnswerOutcome(Mapping[str, Any]):
    """The outcome kept under a key, {"event_id": ..., "payload": ...}, from the answer
    itself. Dumped only if read (a key repeated within a batch): the repository stores it
    from the answer's one serialization, the one the outbox publishes."""

    def __init__(self, answer: Envelope) -> None:
        self.answer = answer

    @cached_property
    def _dumped(self) -> dict[str, Any]:
        return {"event_id": str(self.answer.event_id), "payload": self.answer.payload.model_dump(mode="json")}

    def __getitem__(self, key: str) -> Any:
        return self._dumped[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dumped)

    def __len__(self) -> int:
        return len(self._dumped)


def stored(fingerprint: str, answer: Envelope) -> StoredCommand:
    """What is kept under the idempotency key: the first answer's event id and payload."""
    return StoredCommand(fingerprint, answer.type, AnswerOutcome(answer))


_REPEATABLE: dict[str, type[Envelope]] = {
    PaymentRequested.model_fields["type"].default: PaymentRequested,
    PaymentRejected.model_fields["type"].default: PaymentRejected,
    PaymentCancelled.model_fields["type"].default: PaymentCancelled,
    RemittanceInstructions.model_fields["type"].default: RemittanceInstructions,
}


def repeated(command: Envelope, first: StoredCommand) -> Envelope:
    """The first answer given under the command's key, again."""
    cls = _REPEATABLE[first.outcome_type]
    payload = dict(first.outcome["payload"])
    if cls is not PaymentCancelled:
        payload["repeat_of"] = first.outcome["event_id"]
    return cls.following(command, producer=SERVICE, payload=payload)


# --- what the read model learns from the policy owner -------------------------------------------


def restriction_changed(event: Envelope, invoice_number: str, restriction: Rejection | None) -> Envelope:
    return InvoiceRestrictionChanged.following(
        event,
        producer=SERVICE,
        payload=InvoiceRestrictionChangedPayload(
            invoice_number=invoice_number,
            restricted=restriction is not None,
            reason_code=None if restriction is None else restriction.reason.value,
            message=None if restriction is None else restriction.message,
        ),
    )


def account_balance_payment_changed(event: Envelope, why_not: Rejection | None) -> Envelope:
    return AccountBalancePaymentChanged.following(
        event,
        producer=SERVICE,
        payload=AccountBalancePaymentChangedPayload(
            allowed=why_not is None,
            reason_code=None if why_not is None else why_not.reason.value,
            message=None if why_not is None else why_not.message,
        ),
    )
