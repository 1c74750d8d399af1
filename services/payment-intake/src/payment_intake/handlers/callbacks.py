"""Provider callbacks: the provider's word on a payment (or a refund), applied once; the
verdict is the payment's own (`Payment.judge`)."""

from __future__ import annotations

import logging
from typing import Literal
from uuid import UUID

from payment_intake.domain.payment import Happening, Payment, ProviderWord
from payment_intake.handlers.refunds import flag_money, settle_refund
from payment_intake.messages import flagged, transition_outcome
from payment_intake.unit_of_work import UnitOfWork
from payments_contracts.payments import ProviderCallbackReceived
from payments_platform import tracing

log = logging.getLogger(__name__)

REFUND_EVENTS = frozenset({"refund.succeeded", "refund.failed"})

Receipt = Literal["accepted", "duplicate", "foreign"]


async def receive_callback(message: ProviderCallbackReceived, uow: UnitOfWork) -> Receipt:
    """A verified webhook, taken in once (its id is the key) and published to
    `payments.callbacks` for `on_provider_callback`; refused when it names a payment of
    another account than the one it claims (the payment's account decides).

    Traced, it goes on in its payment's trace: the provider sends no trace context of
    ours (it answers a customer, minutes later), so the payment id is what ties the two,
    and the webhook's own request span (a trace of its own) is linked."""
    p = message.payload
    owner = await uow.payments.account_of(p.payment_id)
    # An unknown payment stays under the claimed account: the consumer flags it there.
    if owner is not None and owner != message.account_id:
        return "foreign"
    traceparent = None
    if tracing.ENABLED and owner is not None:
        traceparent = (await uow.payments.traces_of([p.payment_id])).get(p.payment_id)
    with tracing.resumed(
        traceparent,
        f"provider webhook {p.provider_event}",
        link_current=True,
        attributes={"payments.payment_id": str(p.payment_id), "payments.webhook_id": p.webhook_id},
    ) as span:
        if not await uow.webhooks.first_receipt(p.webhook_id):
            span.set_attribute("payments.webhook.duplicate", True)
            return "duplicate"
        uow.publish(message)
    return "accepted"


async def on_provider_callback(event: ProviderCallbackReceived, uow: UnitOfWork) -> None:
    p = event.payload
    if p.provider_event in REFUND_EVENTS:
        await on_refund_callback(event, uow)
        return
    payment = await uow.payments.get_for_update(p.payment_id)
    if payment is None or payment.account_id != event.account_id:
        why = "unknown_payment" if payment is None else "account_mismatch"
        await _unknown(
            event,
            uow,
            why,
            f"callback_{why}",
            "names a payment we do not know for this account; nothing was changed.",
        )
        return
    word = ProviderWord(
        Happening(p.provider_event),
        checkout_id=p.checkout_id,
        amount=p.amount,
        provider_payment_ref=p.provider_payment_ref,
        reason=p.reason,
    )
    await provider_said(uow, payment, word, cause=event.event_id, source=p.webhook_id)


async def provider_said(
    uow: UnitOfWork, payment: Payment, word: ProviderWord, *, cause: UUID | None, source: str
) -> None:
    """Apply the provider's word to a locked payment: the same moves, events and flags
    whether it came as a webhook or as the answer to a status query (`source` says which)."""
    verdict = payment.judge(word)
    decision = verdict.decision
    await uow.payments.log_callback(
        payment.payment_id, source, word.happening.value, verdict.verdict, decision.note
    )
    if verdict.note_confirmation:
        await uow.payments.note_confirmation(
            payment.payment_id,
            confirmed_minor=word.confirmed_minor,
            confirmed_currency=word.confirmed_currency,
            provider_payment_ref=word.provider_payment_ref,
        )
    if decision.to is None:
        log.info(
            "provider's word did not change the payment",
            extra={"payment_id": str(payment.payment_id), "note": decision.note, "source": source},
        )
    else:
        await uow.payments.move(
            payment.payment_id,
            decision.to,
            reason=verdict.move_reason,
            checkout_id=word.checkout_id,
            confirmed_minor=word.confirmed_minor,
            confirmed_currency=word.confirmed_currency,
            provider_payment_ref=word.provider_payment_ref,
        )
        uow.publish(
            transition_outcome(
                payment,
                decision.to,
                cause=cause,
                reason_code=verdict.reason_code,
                detail=word.reason,
                provider_payment_ref=word.provider_payment_ref,
            )
        )
    if verdict.new_flag is not None:
        uow.publish(
            flagged(
                payment_id=payment.payment_id,
                account_id=payment.account_id,
                correlation_id=payment.correlation_id,
                cause=cause,
                reason_code=verdict.new_flag.reason_code,
                message=verdict.new_flag.message,
            )
        )
        await flag_money(uow, payment, verdict.new_flag.reason_code, cause=cause)


async def on_refund_callback(event: ProviderCallbackReceived, uow: UnitOfWork) -> None:
    p = event.payload
    refund = None if p.refund_id is None else await uow.refunds.get_for_update(p.refund_id)
    if refund is None or refund.payment_id != p.payment_id:
        await _unknown(
            event, uow, "unknown_refund", "callback_unknown_refund", "names a refund we did not ask for."
        )
        return
    applied = await settle_refund(
        uow,
        refund,
        succeeded=p.provider_event == "refund.succeeded",
        provider_refund_id=p.provider_payment_ref,
        reason=p.reason,
        cause=event.event_id,
    )
    await uow.payments.log_callback(
        p.payment_id, p.webhook_id, p.provider_event, "applied" if applied else "ignored", "refund"
    )


async def _unknown(event: ProviderCallbackReceived, uow: UnitOfWork, why: str, code: str, says: str) -> None:
    """A callback about something we do not know: logged and flagged, nothing changed."""
    p = event.payload
    await uow.payments.log_callback(p.payment_id, p.webhook_id, p.provider_event, why, "ignored")
    uow.publish(
        flagged(
            payment_id=p.payment_id,
            account_id=event.account_id,
            correlation_id=event.correlation_id,
            cause=event.event_id,
            reason_code=code,
            message=f"A provider callback ({p.provider_event}) {says}",
        )
    )
