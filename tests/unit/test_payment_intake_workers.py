"""The background workers through their handlers and the in-memory unit of work: the
checkout opener, the expiry timer and the provider worker (status sync, cancel, refunds)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from fakes.payment_intake import FakeIntake
from message_builders import callback, cancel, pay_invoice, registered, synced

from payment_intake.domain.payment import Payment, PaymentStatus
from payment_intake.domain.provider import (
    CheckoutState,
    ClaimedCheckout,
    OpenedCheckout,
    ProviderRefused,
    RefundState,
)
from payment_intake.domain.refunds import Refund
from payment_intake.handlers import handle
from payment_intake.workers import CheckoutOpener, ExpiryTimer, ProviderWorker
from payments_platform.messaging import TransientError


class Provider:
    """Answers as told; records what it was asked."""

    def __init__(self) -> None:
        self.opened: list[UUID] = []
        self.open_answer: Exception | None = None
        self.state = "open"
        self.cancel_answer: Exception | None = None
        self.refund_status = "pending"

    async def open_checkout(self, payment: Payment) -> OpenedCheckout:
        self.opened.append(payment.payment_id)
        if self.open_answer is not None:
            raise self.open_answer
        return OpenedCheckout(
            f"cs_{payment.payment_id.hex[:8]}", "https://pay/x", datetime(2030, 1, 1, tzinfo=UTC)
        )

    async def checkout_state(self, checkout: ClaimedCheckout) -> CheckoutState:
        return CheckoutState(checkout.checkout_id, self.state, 10_000, "USD", "pi_9", None)

    async def cancel_checkout(self, checkout: ClaimedCheckout) -> CheckoutState:
        if self.cancel_answer is not None:
            raise self.cancel_answer
        return CheckoutState(checkout.checkout_id, "cancelled", None, None, None, None)

    async def refund(self, refund: Refund) -> RefundState:
        return RefundState(str(refund.refund_id), "re_1", self.refund_status, None)

    async def refund_state(self, refund: Refund) -> RefundState:
        return RefundState(str(refund.refund_id), "re_1", self.refund_status, None)

    async def close(self) -> None:
        return None


async def a_payment(intake: FakeIntake) -> UUID:
    async with intake.unit() as uow:
        await handle([synced("C1", "INV-1", 10_000), registered("C1", "INV-1", 10_000)], uow)
        await handle([pay_invoice("C1", "INV-1")], uow)
    payment_id: UUID = intake.published[-1].payload.payment_id
    return payment_id


async def test_the_opener_opens_due_checkouts_and_announces_them() -> None:
    intake, provider = FakeIntake(), Provider()
    payment_id = await a_payment(intake)
    opener = CheckoutOpener(intake.unit, provider)
    assert await opener.run_once() == 1
    assert await opener.run_once() == 0  # leased, then no longer requested
    opened = intake.of_type("payment.checkout_opened")
    assert [m.payload.payment_id for m in opened] == [payment_id]
    assert opened[0].payload.expires_at == intake.store.payment(payment_id).expires_at  # the earlier one
    assert intake.store.payment(payment_id).status is PaymentStatus.CHECKOUT_OPEN


async def test_the_opener_retries_an_outage_later_and_fails_a_refusal() -> None:
    intake, provider = FakeIntake(), Provider()
    payment_id = await a_payment(intake)
    opener = CheckoutOpener(intake.unit, provider)
    provider.open_answer = TransientError("provider down")
    assert await opener.run_once() == 1
    row = intake.store.payments[payment_id]
    assert row.payment.status is PaymentStatus.REQUESTED
    assert row.next_attempt_at == intake.store.now + timedelta(seconds=1)  # first backoff
    intake.store.now += timedelta(seconds=2)
    provider.open_answer = ProviderRefused("invalid_amount", "no")
    assert await opener.run_once() == 1
    [failed] = intake.of_type("payment.failed")
    assert failed.payload.reason_code == "checkout_refused"
    assert intake.store.payments[payment_id].end_reason == "checkout_refused:invalid_amount"


async def test_the_opener_gathers_trickling_payments_in_one_round_but_never_waits_after_a_full_one() -> None:
    intake, provider = FakeIntake(), Provider()
    opener = CheckoutOpener(intake.unit, provider, gather_s=0.3, batch_size=2)
    async with intake.unit() as uow:
        numbers = ("INV-1", "INV-2", "INV-3")
        facts = [m for n in numbers for m in (synced("C1", n, 100), registered("C1", n, 100))]
        await handle(facts, uow)
        await handle([pay_invoice("C1", "INV-1")], uow)
    assert await opener.run_once() == 1  # a first round does not wait
    async with intake.unit() as uow:
        await handle([pay_invoice("C1", "INV-2"), pay_invoice("C1", "INV-3")], uow)
    started = time.monotonic()
    assert await opener.run_once() == 2  # waited for the gather interval: both in one round
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    assert await opener.run_once() == 0  # the last round was full: no wait
    assert time.monotonic() - started < 0.25
    assert len(intake.of_type("payment.checkout_opened")) == 3


async def test_the_expiry_timer_ends_payments_past_their_time_in_one_bulk_round() -> None:
    intake = FakeIntake(checkout_ttl_s=60)
    payment_id = await a_payment(intake)
    timer = ExpiryTimer(intake.unit, batch_size=10)
    assert await timer.run_once() == 0
    intake.store.now += timedelta(seconds=61)
    assert await timer.run_once() == 1
    [expired] = intake.of_type("payment.expired")
    assert expired.payload.reason_code == "checkout_expired"
    row = intake.store.payments[payment_id]
    assert row.payment.status is PaymentStatus.EXPIRED and row.cancel_state == "due"
    assert timer.busy(10) and not timer.busy(1)


async def test_status_sync_settles_a_checkout_the_provider_did_not_tell_us_about() -> None:
    intake, provider = FakeIntake(), Provider()
    payment_id = await a_payment(intake)
    await CheckoutOpener(intake.unit, provider).run_once()
    worker = ProviderWorker(intake.unit, provider, intake.config)
    assert await worker.sync() == []  # not past the policy's threshold yet
    intake.store.now += timedelta(hours=1)
    provider.state = "succeeded"
    assert len(await worker.sync()) == 1
    assert [m.type for m in intake.published[-2:]] == ["payment.processing", "payment.succeeded"]
    assert intake.store.payment(payment_id).status is PaymentStatus.SUCCEEDED
    assert [e[1] for e in intake.store.callback_log] == ["status-sync", "status-sync"]


async def test_a_cancel_that_finds_the_money_moved_is_flagged_and_refunded() -> None:
    intake, provider = FakeIntake(), Provider()
    payment_id = await a_payment(intake)
    await CheckoutOpener(intake.unit, provider).run_once()
    async with intake.unit() as uow:
        await handle([cancel("C1", payment_id)], uow)
    provider.cancel_answer = ProviderRefused(
        "checkout_completed",
        "money moved",
        {
            "checkout": {
                "checkout_id": "cs_1",
                "status": "succeeded",
                "amount_minor": 10_000,
                "currency": "USD",
            }
        },
    )
    worker = ProviderWorker(intake.unit, provider, intake.config)
    assert await worker.cancel() == 1
    assert intake.store.payments[payment_id].cancel_state == "too_late"
    assert [m.type for m in intake.published[-2:]] == ["payment.flagged", "payment.refund_requested"]


async def test_a_refund_is_submitted_then_settled_by_the_providers_answer() -> None:
    intake, provider = FakeIntake(), Provider()
    payment_id = await a_payment(intake)
    await CheckoutOpener(intake.unit, provider).run_once()
    async with intake.unit() as uow:
        await handle([callback("C1", payment_id, "payment.succeeded", amount=9_000)], uow)
    worker = ProviderWorker(intake.unit, provider, intake.config, refund_query_after_s=30)
    assert await worker.refund() == 1
    [refund] = intake.store.refunds.values()
    assert (refund.status, refund.provider_refund_id) == ("submitted", "re_1")
    assert await worker.refund() == 0  # its webhook is not overdue yet
    intake.store.now += timedelta(seconds=31)
    provider.refund_status = "succeeded"
    assert await worker.refund() == 1
    assert intake.store.refunds[refund.refund_id].status == "refunded"
    assert [m.type for m in intake.published[-2:]] == ["payment.refunded", "payment.failed"]
