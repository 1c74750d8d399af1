"""payment-intake's idempotency keys and webhook ids under retention, on real Kafka and
PostgreSQL: expired ones are pruned, a key whose payment is still open never is, and a
repeat inside the window still has no second effect."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from message_builders import pay_invoice
from payment_intake_support import Intake, running_intake, sign, until

from payment_intake.retention import IntakeRetentionSettings, pruner
from payments_platform.retention import PRUNED

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
ACC = "ACC-RET"


def _webhook(kind: str, payment_id: object, checkout_id: str) -> str:
    data = {
        "checkout_id": checkout_id,
        "payment_id": str(payment_id),
        "account_id": ACC,
        "amount_minor": 1_000,
        "currency": "USD",
    }
    return json.dumps({"type": kind, "timestamp": datetime.now(UTC).isoformat(), "data": data})


async def _post(intake: Intake, body: str, webhook_id: str) -> str:
    response = await intake.http.post(
        intake.http_url + "/callbacks/provider", content=body, headers=sign(body, webhook_id=webhook_id)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def _opened(intake: Intake, number: str, key: str) -> tuple[object, str]:
    await intake.invoice(ACC, number, 1_000)
    command = pay_invoice(ACC, number, key=key)
    await intake.send(command)
    answer = await intake.answer(command)
    assert answer.type == "payment.requested", answer.payload
    opened = await intake.event(answer.payload.payment_id, "payment.checkout_opened")
    return answer.payload.payment_id, opened.payload.checkout_id


async def test_expired_keys_and_webhook_ids_pruned_open_payments_keep_theirs_repeats_inside_change_nothing(
    kafka_bootstrap, database_url, topics
):
    async with running_intake(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, topics=topics
    ) as intake:
        pool = intake.parts.pool
        # An open payment (key-open), one that failed (key-failed), a rejected command (key-rejected).
        open_payment, open_checkout = await _opened(intake, "INV-1", "key-open")
        failed_payment, failed_checkout = await _opened(intake, "INV-2", "key-failed")
        assert (
            await _post(intake, _webhook("payment.failed", failed_payment, failed_checkout), "wh-1")
            == "accepted"
        )
        await intake.event(failed_payment, "payment.failed")
        assert await _post(intake, _webhook("payment.processing", open_payment, open_checkout), "wh-2") == (
            "accepted"
        )
        await intake.event(open_payment, "payment.processing")
        rejected = pay_invoice(ACC, "INV-404", key="key-rejected")
        await intake.send(rejected)
        assert (await intake.answer(rejected)).type == "payment.rejected"

        # Everything so far is two days old; then a key and a webhook id inside the window.
        await pool.execute("UPDATE commands SET answered_at = answered_at - interval '2 days'")
        await pool.execute("UPDATE webhooks_received SET received_at = received_at - interval '2 days'")
        await pool.execute("UPDATE processed_events SET processed_at = processed_at - interval '2 days'")
        recent, recent_checkout = await _opened(intake, "INV-3", "key-recent")
        assert await _post(intake, _webhook("payment.failed", recent, recent_checkout), "wh-3") == "accepted"
        await intake.event(recent, "payment.failed")

        settings = IntakeRetentionSettings(processed_events=DAY, commands=DAY, webhooks=DAY, batch_size=2)
        before = PRUNED.labels("payment-intake", "commands")._value.get()
        pruned = await pruner(pool, settings).prune_all()

        assert pruned["commands"] == 2 and pruned["webhooks_received"] == 2
        assert pruned["processed_events"] > 0
        assert PRUNED.labels("payment-intake", "commands")._value.get() - before == 2
        keys = {r["idempotency_key"] for r in await pool.fetch("SELECT idempotency_key FROM commands")}
        assert keys == {"key-open", "key-recent"}  # key-open: older than the window, payment open
        webhook_ids = {r["webhook_id"] for r in await pool.fetch("SELECT webhook_id FROM webhooks_received")}
        assert webhook_ids == {"wh-3"}
        payments = await pool.fetchval("SELECT count(*) FROM payments")
        checkouts = len((await intake.sandbox("GET", "/sandbox/checkouts")).json())

        # Repeats: each gets its first answer, and nothing happens twice.
        for key, number, first in (("key-recent", "INV-3", recent), ("key-open", "INV-1", open_payment)):
            again = pay_invoice(ACC, number, key=key)
            await intake.send(again)
            answer = await intake.answer(again)
            assert answer.type == "payment.requested"
            assert answer.payload.payment_id == first and answer.payload.repeat_of is not None
        assert await _post(intake, _webhook("payment.failed", recent, recent_checkout), "wh-3") == "duplicate"
        # A pruned key is judged afresh: the same rejection, but not as a repeat of the first.
        again = pay_invoice(ACC, "INV-404", key="key-rejected")
        await intake.send(again)
        answer = await intake.answer(again)
        assert answer.type == "payment.rejected" and answer.payload.reason_code == "invoice_not_found"
        assert answer.payload.repeat_of is None

        await until(
            lambda: pool.fetchval("SELECT count(*) FROM commands WHERE idempotency_key = 'key-rejected'"),
            what="the fresh answer stored",
        )
        assert await pool.fetchval("SELECT count(*) FROM payments") == payments
        assert len((await intake.sandbox("GET", "/sandbox/checkouts")).json()) == checkouts
        assert [e.type for e in intake.events.for_payment(recent)].count("payment.failed") == 1
