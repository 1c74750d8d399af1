"""Provider callbacks through the handlers and the in-memory unit of work: a payment's
verdict on the provider's word, flags and the refunds they call for."""

from __future__ import annotations

from uuid import UUID

from fakes.payment_intake import FakeIntake
from message_builders import callback, pay_invoice, registered, synced

from payment_intake.domain.payment import PaymentStatus
from payment_intake.handlers import handle
from payment_intake.handlers.callbacks import receive_callback
from payments_contracts import Envelope


async def consume(intake: FakeIntake, *messages: Envelope) -> list[Envelope]:
    before = len(intake.published)
    async with intake.unit() as uow:
        await handle(list(messages), uow)
    return intake.published[before:]


async def a_payment(intake: FakeIntake, number: str = "INV-1", account: str = "C1") -> UUID:
    *_, requested = await consume(
        intake,
        synced(account, number, 10_000),
        registered(account, number, 10_000),
        pay_invoice(account, number),
    )
    payment_id: UUID = requested.payload.payment_id
    return payment_id


async def test_success_for_the_amount_asked_succeeds_the_payment_once() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    [succeeded] = await consume(intake, callback("C1", payment_id, "payment.succeeded", amount=10_000))
    assert succeeded.type == "payment.succeeded"
    assert succeeded.payload.provider_payment_ref == "pi_1"
    payment = intake.store.payment(payment_id)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.confirmed_minor == 10_000
    assert [a.succeeded for a in intake.store.allocations] == [True]
    assert await consume(intake, callback("C1", payment_id, "payment.succeeded", amount=10_000)) == []
    assert [entry[3] for entry in intake.store.callback_log] == ["applied", "ignored"]


async def test_a_failure_ends_the_payment_with_the_providers_reason() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    [failed] = await consume(intake, callback("C1", payment_id, "payment.failed", reason="card_declined"))
    assert failed.type == "payment.failed"
    assert failed.payload.reason_code == "payment_failed"
    assert "card_declined" in failed.payload.message
    assert intake.store.payments[payment_id].end_reason == "card_declined"


async def test_another_amount_holds_the_payment_flags_it_and_refunds_it() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    published = await consume(intake, callback("C1", payment_id, "payment.succeeded", amount=9_000))
    assert [m.type for m in published] == [
        "payment.processing",
        "payment.flagged",
        "payment.refund_requested",
    ]
    assert published[1].payload.reason_code == "amount_mismatch"
    payment = intake.store.payment(payment_id)
    assert payment.status is PaymentStatus.PROCESSING and payment.flag_reason == "amount_mismatch"
    assert payment.confirmed_minor == 9_000
    [refund] = intake.store.refunds.values()
    assert (refund.amount_minor, refund.reason_code, refund.requested_by) == (
        9_000,
        "amount_mismatch",
        "policy",
    )


async def test_money_taken_after_the_customer_cancelled_is_a_late_payment_refunded() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    await consume(intake, callback("C1", payment_id, "checkout.cancelled"))
    published = await consume(intake, callback("C1", payment_id, "payment.succeeded", amount=10_000))
    assert [m.type for m in published] == ["payment.flagged", "payment.refund_requested"]
    assert published[0].payload.reason_code == "succeeded_after_end"
    assert published[1].payload.reason_code == "late_payment"
    assert intake.store.payment(payment_id).status is PaymentStatus.CANCELLED


async def test_a_callback_naming_an_unknown_payment_or_another_account_changes_nothing() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    [unknown] = await consume(intake, callback("C1", UUID(int=7), "payment.succeeded", amount=1))
    [foreign] = await consume(intake, callback("C2", payment_id, "payment.succeeded", amount=10_000))
    assert [unknown.payload.reason_code, foreign.payload.reason_code] == [
        "callback_unknown_payment",
        "callback_account_mismatch",
    ]
    assert intake.store.payment(payment_id).status is PaymentStatus.REQUESTED


async def test_a_refund_callback_settles_the_refund_once() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    await consume(intake, callback("C1", payment_id, "payment.succeeded", amount=9_000))
    [refund] = intake.store.refunds.values()
    published = await consume(
        intake, callback("C1", payment_id, "refund.succeeded", refund_id=refund.refund_id)
    )
    assert [m.type for m in published] == ["payment.refunded", "payment.failed"]
    assert published[1].payload.reason_code == "amount_mismatch_refunded"
    assert intake.store.refunds[refund.refund_id].status == "refunded"
    assert (
        await consume(intake, callback("C1", payment_id, "refund.failed", refund_id=refund.refund_id)) == []
    )
    [stranger] = await consume(intake, callback("C1", payment_id, "refund.succeeded", refund_id=UUID(int=9)))
    assert stranger.payload.reason_code == "callback_unknown_refund"


async def test_a_webhook_is_taken_in_once_and_never_for_another_accounts_payment() -> None:
    intake = FakeIntake()
    payment_id = await a_payment(intake)
    webhook = callback("C1", payment_id, "payment.processing")
    receipts = []
    for message in (webhook, webhook, callback("C2", payment_id, "payment.processing")):
        async with intake.unit() as uow:
            receipts.append(await receive_callback(message, uow))
    assert receipts == ["accepted", "duplicate", "foreign"]
    assert intake.published[-1] is webhook
    async with intake.unit() as uow:  # an unknown payment goes on, to be flagged by the consumer
        assert await receive_callback(callback("C9", UUID(int=5), "payment.failed"), uow) == "accepted"
