"""Status sync, cancel at the provider and refunds, on real Kafka and PostgreSQL with the
sandbox provider over HTTP: nothing stays stuck when a webhook is lost, a cancelled
checkout is cancelled at the provider too, and money taken late, twice or in another
amount goes back exactly once."""

from __future__ import annotations

import time
import uuid

import pytest
from message_builders import pay_invoice
from payment_intake_support import Intake, fresh_database, fresh_topics, running_intake, until

from payments_contracts.payments import CancelCheckout, CancelCheckoutPayload, CardOnline

pytestmark = pytest.mark.integration

SYNC_AFTER_S = 1


@pytest.fixture(scope="module")
async def env(kafka_bootstrap, postgres_url):
    async with fresh_database(postgres_url) as db:
        topics = await fresh_topics(kafka_bootstrap)
        async with running_intake(
            kafka_bootstrap=kafka_bootstrap,
            database_url=db,
            topics=topics,
            policy="partial-multi-portal",
            checkout_ttl_s=60,
            status_sync_after_s=SYNC_AFTER_S,
            refund_query_after_s=1.0,
        ) as intake:
            yield intake, db


def account() -> str:
    return f"ACC-{uuid.uuid4().hex[:8]}"


async def opened(
    intake: Intake, acc: str, number: str = "INV-1", minor: int = 1_000
) -> tuple[uuid.UUID, str]:
    await intake.invoice(acc, number, minor)
    command = pay_invoice(acc, number, method=CardOnline())
    await intake.send(command)
    answer = await intake.answer(command)
    assert answer.type == "payment.requested", answer.payload
    payment_id = answer.payload.payment_id
    checkout = await intake.event(payment_id, "payment.checkout_opened")
    return payment_id, checkout.payload.checkout_id


async def dropping(intake: Intake, drop: bool) -> None:
    await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": drop})


def types(intake: Intake, payment_id: uuid.UUID) -> list[str]:
    return [e.type for e in intake.events.for_payment(payment_id)]


async def test_a_completed_payment_whose_webhooks_are_lost_succeeds_by_status_sync(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    await dropping(intake, True)
    try:
        await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete")
        lost_at = time.monotonic()
        succeeded = await intake.event(payment_id, "payment.succeeded", timeout=20)
        took = time.monotonic() - lost_at
    finally:
        await dropping(intake, False)
    assert succeeded.payload.amount.amount_minor == 1_000
    assert succeeded.payload.provider_payment_ref == f"pay_{checkout_id[3:]}"
    # The same events as if the webhooks had arrived: processing, then succeeded.
    assert types(intake, payment_id)[-2:] == ["payment.processing", "payment.succeeded"]
    failed = (await intake.sandbox("GET", "/sandbox/webhooks/failed")).json()
    assert {m["state"] for m in failed if m["body"]["data"]["payment_id"] == str(payment_id)} == {"dropped"}
    assert took < SYNC_AFTER_S + 10
    print(f"\nlost success -> succeeded by status sync in {took:.2f} s (threshold {SYNC_AFTER_S} s)")


async def test_a_failed_payment_whose_webhook_is_lost_fails_by_status_sync_and_can_be_paid_again(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    await dropping(intake, True)
    try:
        await intake.sandbox(
            "POST", f"/sandbox/checkouts/{checkout_id}/fail", json={"reason": "card_declined"}
        )
        lost_at = time.monotonic()
        failed = await intake.event(payment_id, "payment.failed", timeout=20)
        took = time.monotonic() - lost_at
    finally:
        await dropping(intake, False)
    assert failed.payload.reason_code == "payment_failed"
    assert "card_declined" in failed.payload.message
    again = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(again)
    assert (await intake.answer(again)).type == "payment.requested"
    print(f"\nlost failure -> failed by status sync in {took:.2f} s")


async def test_a_checkout_the_provider_does_not_know_ends_failed_with_a_reason(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    await intake.sandbox("DELETE", f"/sandbox/checkouts/{checkout_id}")
    failed = await intake.event(payment_id, "payment.failed", timeout=20)
    assert failed.payload.reason_code == "unknown_at_provider"
    row = await intake.parts.pool.fetchrow(
        "SELECT status, end_reason FROM payments WHERE payment_id = $1", payment_id
    )
    assert (row["status"], row["end_reason"]) == ("failed", "unknown_at_provider")


async def test_an_open_checkout_is_left_open_by_status_sync(env):
    intake, _ = env
    acc = account()
    payment_id, _ = await opened(intake, acc)
    await until(
        lambda: intake.parts.pool.fetchval(
            "SELECT sync_attempts > 0 FROM payments WHERE payment_id = $1", payment_id
        ),
        what="a status sync of the open checkout",
    )
    status = await intake.parts.pool.fetchval("SELECT status FROM payments WHERE payment_id = $1", payment_id)
    assert status == "checkout_open"
    assert types(intake, payment_id) == ["payment.requested", "payment.checkout_opened"]


async def test_a_cancelled_checkout_is_cancelled_at_the_provider_and_a_late_completion_refunded(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    cancel = CancelCheckout.originating(
        producer="portal",
        account_id=acc,
        payload=CancelCheckoutPayload(idempotency_key=str(uuid.uuid4()), payment_id=payment_id),
    )
    await intake.send(cancel)
    assert (await intake.answer(cancel)).type == "payment.cancelled"

    async def at_provider() -> str:
        listed = (await intake.sandbox("GET", f"/sandbox/checkouts?payment_id={payment_id}")).json()
        return str(listed[0]["status"])

    await until(lambda: _is(at_provider, "cancelled"), what="the checkout cancelled at the provider")
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"late": True})
    requested = await intake.event(payment_id, "payment.refund_requested")
    assert requested.payload.reason_code == "late_payment"
    refunded = await intake.event(payment_id, "payment.refunded")
    assert refunded.payload.amount.amount_minor == 1_000
    refunds = (await intake.sandbox("GET", "/sandbox/refunds")).json()
    assert [r["status"] for r in refunds if r["payment_id"] == str(payment_id)] == ["succeeded"]
    assert "payment.succeeded" not in types(intake, payment_id)


async def _is(probe, wanted: str) -> bool:
    return await probe() == wanted


async def test_money_taken_twice_for_an_invoice_is_refunded_as_a_double_payment(env):
    intake, _ = env
    acc = account()
    first, first_checkout = await opened(intake, acc)
    cancel = CancelCheckout.originating(
        producer="portal",
        account_id=acc,
        payload=CancelCheckoutPayload(idempotency_key=str(uuid.uuid4()), payment_id=first),
    )
    await intake.send(cancel)
    await intake.answer(cancel)
    second = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(second)
    second_id = (await intake.answer(second)).payload.payment_id
    second_checkout = (await intake.event(second_id, "payment.checkout_opened")).payload.checkout_id
    await intake.sandbox("POST", f"/sandbox/checkouts/{second_checkout}/complete")
    await intake.event(second_id, "payment.succeeded")
    await intake.sandbox("POST", f"/sandbox/checkouts/{first_checkout}/complete", json={"late": True})
    requested = await intake.event(first, "payment.refund_requested")
    assert requested.payload.reason_code == "double_payment"
    await intake.event(first, "payment.refunded")
    assert not [e for e in intake.events.for_payment(second_id) if e.type.startswith("payment.refund")]


async def test_another_amount_taken_is_refunded_and_the_invoice_is_payable_again(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"amount_minor": 900})
    requested = await intake.event(payment_id, "payment.refund_requested")
    assert requested.payload.reason_code == "amount_mismatch"
    assert requested.payload.amount.amount_minor == 900  # what the provider took goes back
    await intake.event(payment_id, "payment.refunded")
    failed = await intake.event(payment_id, "payment.failed")
    assert failed.payload.reason_code == "amount_mismatch_refunded"
    again = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(again)
    assert (await intake.answer(again)).type == "payment.requested"


async def test_a_refund_the_provider_declines_is_announced_as_failed(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/refuse-refunds")
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"amount_minor": 1_500})
    failed = await intake.event(payment_id, "payment.refund_failed")
    assert failed.payload.reason_code == "refund_declined"
    assert "payment.refunded" not in types(intake, payment_id)


async def test_a_refund_whose_webhook_is_lost_is_settled_by_asking_the_provider(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened(intake, acc)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"amount_minor": 1_200})
    await intake.event(payment_id, "payment.refund_requested")
    await dropping(intake, True)
    try:
        refunded = await intake.event(payment_id, "payment.refunded", timeout=20)
    finally:
        await dropping(intake, False)
    assert refunded.payload.amount.amount_minor == 1_200
