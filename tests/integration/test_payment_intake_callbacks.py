"""Provider callbacks, the state machine's edges, expiry, cancel, balances and card hygiene."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from message_builders import guest, pay_invoice, synced
from payment_intake_support import Intake, fresh_database, fresh_topics, running_intake, sign, until

from kafka_tools import eventually, read_all
from payments_contracts.payments import (
    BillingAddress,
    CancelCheckout,
    CancelCheckoutPayload,
    CardOnline,
    GuestCheckout,
)

pytestmark = pytest.mark.integration

PAN = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
async def env(kafka_bootstrap, postgres_url):
    async with fresh_database(postgres_url) as db:
        topics = await fresh_topics(kafka_bootstrap)
        async with running_intake(
            kafka_bootstrap=kafka_bootstrap,
            database_url=db,
            topics=topics,
            policy="partial-multi-portal",
            checkout_ttl_s=3,
        ) as intake:
            yield intake, db


def account() -> str:
    return f"ACC-{uuid.uuid4().hex[:8]}"


async def opened_payment(intake: Intake, acc: str, number: str = "INV-1", minor: int = 1_000, **kw):
    await intake.invoice(acc, number, minor)
    command = pay_invoice(acc, number, method=CardOnline(), **kw)
    await intake.send(command)
    answer = await intake.answer(command)
    assert answer.type == "payment.requested", answer.payload
    opened = await intake.event(answer.payload.payment_id, "payment.checkout_opened")
    return answer.payload.payment_id, opened.payload.checkout_id


def webhook(kind: str, acc: str, payment_id, checkout_id: str, amount: int = 1_000, **extra) -> str:
    data = {
        "checkout_id": checkout_id,
        "payment_id": str(payment_id),
        "account_id": acc,
        "amount_minor": amount,
        "currency": "USD",
        **extra,
    }
    return json.dumps({"type": kind, "timestamp": datetime.now(UTC).isoformat(), "data": data})


async def post(intake: Intake, body: str, headers: dict[str, str]):
    return await intake.http.post(intake.http_url + "/callbacks/provider", content=body, headers=headers)


async def count(db: str, sql: str, *args) -> int:
    conn = await asyncpg.connect(db, server_settings={"search_path": "payment_intake"})
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_bad_signature_is_refused_with_401_and_nothing_published(env):
    intake, db = env
    body = webhook("payment.succeeded", "X", uuid.uuid4(), "cs_x")
    forged = sign(body, webhook_id="msg_forged", secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
    assert (await post(intake, body, forged)).status_code == 401
    tampered = sign(body, webhook_id="msg_tampered")
    assert (await post(intake, body.replace("1000", "1"), tampered)).status_code == 401
    unsigned = {"webhook-id": "msg_unsigned", "webhook-timestamp": str(int(datetime.now(UTC).timestamp()))}
    assert (await post(intake, body, unsigned)).status_code == 401
    assert (
        await count(
            db,
            "SELECT count(*) FROM webhooks_received WHERE webhook_id LIKE 'msg_%'"
            " AND webhook_id IN ('msg_forged', 'msg_tampered', 'msg_unsigned')",
        )
        == 0
    )


async def test_stale_timestamp_is_refused_with_400_and_nothing_published(env):
    intake, db = env
    body = webhook("payment.succeeded", "X", uuid.uuid4(), "cs_x")
    stale = sign(body, webhook_id="msg_stale", at=datetime.now(UTC) - timedelta(minutes=6))
    assert (await post(intake, body, stale)).status_code == 400
    future = sign(body, webhook_id="msg_future", at=datetime.now(UTC) + timedelta(minutes=6))
    assert (await post(intake, body, future)).status_code == 400
    assert (
        await count(
            db, "SELECT count(*) FROM webhooks_received WHERE webhook_id IN ('msg_stale', 'msg_future')"
        )
        == 0
    )


async def test_nothing_refused_reaches_the_callbacks_topic(env, kafka_bootstrap):
    intake, _ = env
    body = webhook("payment.succeeded", "NOPE", uuid.uuid4(), "cs_nope")
    await post(
        intake,
        body,
        sign(body, webhook_id="msg_refused", secret="whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA=="),
    )
    accepted_body = webhook("payment.processing", "NOPE", uuid.uuid4(), "cs_ok")
    assert (
        await post(intake, accepted_body, sign(accepted_body, webhook_id="msg_marker"))
    ).status_code == 200
    reader = AIOKafkaConsumer(
        intake.registry.payments_callbacks.name,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await reader.start()
    seen: list[str] = []
    try:

        async def marker_seen():
            batch = await reader.getmany(timeout_ms=200)
            seen.extend(json.loads(r.value)["payload"]["webhook_id"] for rs in batch.values() for r in rs)
            return "msg_marker" in seen

        await until(marker_seen, what="the accepted callback on payments.callbacks")
    finally:
        await reader.stop()
    assert "msg_refused" not in seen


async def test_a_callback_for_an_unknown_payment_is_recorded_and_flagged(env):
    intake, db = env
    acc, unknown = account(), uuid.uuid4()
    body = webhook("payment.succeeded", acc, unknown, "cs_ghost")
    assert (await post(intake, body, sign(body))).status_code == 200
    flag = await intake.event(unknown, "payment.flagged")
    assert flag.payload.reason_code == "callback_unknown_payment"
    assert (
        await count(
            db,
            "SELECT count(*) FROM callback_log WHERE payment_id = $1 AND verdict = 'unknown_payment'",
            unknown,
        )
        == 1
    )


async def test_a_failure_after_success_is_recorded_and_does_not_change_the_outcome(env):
    intake, db = env
    acc = account()
    payment_id, checkout_id = await opened_payment(intake, acc)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete")
    await intake.event(payment_id, "payment.succeeded")
    late = webhook("payment.failed", acc, payment_id, checkout_id, reason="card_declined")
    assert (await post(intake, late, sign(late))).status_code == 200
    await until(
        lambda: count(
            db, "SELECT count(*) FROM callback_log WHERE payment_id = $1 AND verdict = 'ignored'", payment_id
        ),
        what="the late callback recorded",
    )
    assert (
        await count(
            db, "SELECT count(*) FROM payments WHERE payment_id = $1 AND status = 'succeeded'", payment_id
        )
        == 1
    )
    assert not [e for e in intake.events.for_payment(payment_id) if e.type == "payment.failed"]


async def test_a_confirmed_amount_other_than_asked_is_flagged_not_accepted(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened_payment(intake, acc)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"amount_minor": 900})
    flag = await intake.event(payment_id, "payment.flagged")
    assert flag.payload.reason_code == "amount_mismatch"
    assert not [e for e in intake.events.for_payment(payment_id) if e.type == "payment.succeeded"]
    again = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(again)
    assert (await intake.answer(again)).payload.reason_code == "payment_pending"  # nobody pays it twice


async def test_a_failed_payment_makes_the_invoice_payable_again(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened_payment(intake, acc)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/fail", json={"reason": "card_declined"})
    failed = await intake.event(payment_id, "payment.failed")
    assert failed.payload.reason_code == "payment_failed"
    again = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(again)
    assert (await intake.answer(again)).type == "payment.requested"


async def test_a_checkout_not_completed_in_time_expires_and_the_invoice_is_payable_again(env):
    intake, _ = env
    acc = account()
    payment_id, _ = await opened_payment(intake, acc)
    expired = await intake.event(payment_id, "payment.expired", timeout=10)
    assert expired.payload.reason_code == "checkout_expired"
    again = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(again)
    assert (await intake.answer(again)).type == "payment.requested"


async def test_money_moving_after_expiry_is_flagged_and_refunded(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened_payment(intake, acc)
    await intake.event(payment_id, "payment.expired", timeout=10)
    # The customer paid in the moment before our cancellation reached the provider.
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"late": True})
    flag = await until(
        lambda: [e for e in intake.events.for_payment(payment_id) if e.type == "payment.flagged"],
        what="a flag",
    )
    assert flag[0].payload.reason_code == "succeeded_after_end"
    assert not [e for e in intake.events.for_payment(payment_id) if e.type == "payment.succeeded"]
    requested = await intake.event(payment_id, "payment.refund_requested")
    assert requested.payload.reason_code == "late_payment"
    assert requested.payload.requested_by == "policy"
    refunded = await intake.event(payment_id, "payment.refunded")
    assert refunded.payload.refund_id == requested.payload.refund_id
    assert refunded.payload.amount.amount_minor == 1_000


async def test_a_customer_cancels_a_checkout_and_can_pay_again(env):
    intake, _ = env
    acc = account()
    payment_id, _ = await opened_payment(intake, acc)
    cancel = CancelCheckout.originating(
        producer="portal",
        account_id=acc,
        payload=CancelCheckoutPayload(idempotency_key=str(uuid.uuid4()), payment_id=payment_id),
    )
    await intake.send(cancel)
    assert (await intake.answer(cancel)).type == "payment.cancelled"
    someone_else = CancelCheckout.originating(
        producer="portal",
        account_id=account(),
        payload=CancelCheckoutPayload(idempotency_key=str(uuid.uuid4()), payment_id=payment_id),
    )
    await intake.send(someone_else)
    assert (await intake.answer(someone_else)).payload.reason_code == "unknown_payment"
    again = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(again)
    assert (await intake.answer(again)).type == "payment.requested"


async def test_a_succeeded_payment_is_subtracted_once_until_and_after_the_erp_posts_it(env):
    intake, _ = env
    acc = account()
    payment_id, checkout_id = await opened_payment(intake, acc, minor=1_000, amount=400)
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete")
    await intake.event(payment_id, "payment.succeeded")
    too_much = pay_invoice(acc, "INV-1", amount=601, method=CardOnline())
    await intake.send(too_much)
    assert (await intake.answer(too_much)).payload.reason_code == "amount_above_balance"  # 1000 - 400
    # The ERP posts our payment: open amount 600, and the posted payment names our payment id.
    await intake.send(
        synced(acc, "INV-1", 600, version=2, total_minor=1_000, posted=[(str(payment_id), 400)])
    )
    rest = pay_invoice(acc, "INV-1", amount=600, method=CardOnline())
    await intake.send(rest)
    assert (await intake.answer(rest)).type == "payment.requested"  # 600, not 200


async def test_a_card_number_in_any_field_is_rejected_and_never_stored_or_published(env, kafka_bootstrap):
    intake, db = env
    acc = account()
    await intake.invoice(acc, "INV-1", 1_000, country="US")
    sneaky = GuestCheckout(
        billing_address=BillingAddress(**{**guest().billing_address.model_dump(), "address_line2": PAN}),
        name_on_card="Pat Payer",
    )
    command = pay_invoice(acc, "INV-1", key=f"k-{PAN}", method=sneaky)
    await intake.send(command)
    answer = await intake.answer(command)
    assert answer.payload.reason_code == "card_number_in_input"
    digits = PAN.replace(" ", "")
    conn = await asyncpg.connect(db)
    try:
        dump = await conn.fetchval(
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM payment_intake.commands) t"
        )
        outbox = await conn.fetchval(
            "SELECT string_agg(encode(value, 'escape'), ' ') FROM payment_intake.outbox"
        )
    finally:
        await conn.close()
    for text in (dump or "", outbox or "", answer.model_dump_json()):
        assert PAN not in text and digits not in text
    raw = AIOKafkaConsumer(
        intake.registry.payments_events.name,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await raw.start()
    try:
        batch = await raw.getmany(timeout_ms=2000, max_records=10_000)
        values = b" ".join(r.value for rs in batch.values() for r in rs)
    finally:
        await raw.stop()
    assert values and digits.encode() not in values and PAN.encode() not in values


async def test_a_callback_naming_another_accounts_payment_is_refused_and_not_published(env, kafka_bootstrap):
    intake, db = env
    owner, caller = account(), account()
    payment_id, checkout_id = await opened_payment(intake, owner)
    body = webhook("payment.succeeded", caller, payment_id, checkout_id)
    webhook_id = f"msg_cross_{uuid.uuid4().hex[:8]}"
    response = await post(intake, body, sign(body, webhook_id=webhook_id))
    assert response.status_code == 409 and response.json()["error"]["code"] == "account_mismatch"
    assert await count(db, "SELECT count(*) FROM webhooks_received WHERE webhook_id = $1", webhook_id) == 0
    # The same callback under the payment's own account is accepted, and goes there.
    own = webhook("payment.succeeded", owner, payment_id, checkout_id)
    own_id = f"msg_own_{uuid.uuid4().hex[:8]}"
    assert (await post(intake, own, sign(own, webhook_id=own_id))).json()["status"] == "accepted"

    async def callbacks() -> list[dict]:
        records = await read_all(kafka_bootstrap, intake.registry.payments_callbacks.name)
        return [json.loads(r.value) for r in records]

    published = await eventually(
        callbacks, lambda cs: any(c["payload"]["webhook_id"] == own_id for c in cs), what="own callback"
    )
    assert [c["account_id"] for c in published if c["payload"]["webhook_id"] == own_id] == [owner]
    assert not [c for c in published if c["payload"]["webhook_id"] == webhook_id]
    assert not [c for c in published if c["account_id"] == caller]
    assert not [e for e in intake.events.for_payment(payment_id) if e.account_id == caller]


async def test_a_cancel_command_with_a_card_number_is_rejected_without_it(env):
    intake, db = env
    acc = account()
    cancel = CancelCheckout.originating(
        producer="portal",
        account_id=acc,
        payload=CancelCheckoutPayload(
            idempotency_key=f"undo {PAN.replace(' ', '.')}", payment_id=uuid.uuid4()
        ),
    )
    await intake.send(cancel)
    answer = await intake.answer(cancel)
    assert answer.payload.reason_code == "card_number_in_input"
    assert "1111" not in answer.model_dump_json()
    keys = await count(db, "SELECT count(*) FROM commands WHERE idempotency_key LIKE '%1111%'")
    assert keys == 0
