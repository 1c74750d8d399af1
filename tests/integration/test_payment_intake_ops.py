"""`payment-intake-ops` as an operator runs it (a separate process) against a running
payment-intake on real Kafka and PostgreSQL: stuck payments listed and reconciled now,
a flagged payment the policy does not refund listed as refundable and refunded once,
per-partition lag shown."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from message_builders import pay_invoice
from payment_intake_support import Intake, fresh_database, fresh_topics, running_intake
from prometheus_client import REGISTRY

from payment_intake import ops as ops_module
from payments_contracts.payments import CancelCheckout, CancelCheckoutPayload, CardOnline

pytestmark = pytest.mark.integration

OPS = str(Path(sys.executable).parent / "payment-intake-ops")


@pytest.fixture(scope="module")
async def env(kafka_bootstrap, postgres_url, tmp_path_factory):
    merchants = tmp_path_factory.mktemp("ops") / "merchants.yaml"
    merchants.write_text(
        "default: manual\npolicies:\n  manual: {preset: partial-multi-portal, auto_refund: false}\n"
    )
    async with fresh_database(postgres_url) as db:
        topics = await fresh_topics(kafka_bootstrap)
        async with running_intake(
            kafka_bootstrap=kafka_bootstrap,
            database_url=db,
            topics=topics,
            checkout_ttl_s=600,
            merchant_config=str(merchants),
            status_sync_after_s=3600,  # nothing syncs by itself here: the operator does
        ) as intake:
            env = {
                **os.environ,
                "PAYMENTS_DATABASE_URL": db,
                "PAYMENTS_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "PAYMENTS_TOPIC_PREFIX": topics.prefix,
                "PAYMENTS_PROVIDER_URL": intake.sandbox_url,
                "PAYMENT_INTAKE_MERCHANT_CONFIG": str(merchants),
                "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": "3600",  # the service's own environment
                "COLUMNS": "250",
            }
            yield intake, env


async def ops(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        OPS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def _checkout(intake: Intake, payment_id: uuid.UUID) -> str:
    return (await intake.event(payment_id, "payment.checkout_opened")).payload.checkout_id


async def opened(intake: Intake, acc: str) -> tuple[uuid.UUID, str]:
    await intake.invoice(acc, "INV-1", 1_000)
    command = pay_invoice(acc, "INV-1", method=CardOnline())
    await intake.send(command)
    payment_id = (await intake.answer(command)).payload.payment_id
    checkout = await intake.event(payment_id, "payment.checkout_opened")
    return payment_id, checkout.payload.checkout_id


async def test_an_operator_finds_a_stuck_payment_and_reconciles_it_now(env):
    intake, cli = env
    payment_id, checkout_id = await opened(intake, f"ACC-{uuid.uuid4().hex[:8]}")
    await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": True})
    try:
        await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete")
        code, out = await ops(cli, "stuck", "--older-than", "0")
        assert code == 0 and str(payment_id) in out and "checkout_open" in out
        code, out = await ops(cli, "reconcile", str(payment_id))
        assert code == 0 and "asked the provider about 1 payment" in out, out
    finally:
        await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": False})
    await intake.event(payment_id, "payment.succeeded")
    code, out = await ops(cli, "lag")
    assert code == 0 and "total lag" in out and "payments.commands" in out


def row_of(out: str, payment_id: uuid.UUID) -> str:
    [row] = [line for line in out.splitlines() if str(payment_id) in line]
    return row


async def test_stuck_shows_when_status_sync_asks_next_and_reconcile_shows_each_answer(env):
    intake, cli = env
    paid, paid_checkout = await opened(intake, f"ACC-{uuid.uuid4().hex[:8]}")
    waiting, _ = await opened(intake, f"ACC-{uuid.uuid4().hex[:8]}")
    await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": True})
    try:
        await intake.sandbox("POST", f"/sandbox/checkouts/{paid_checkout}/complete")
        code, out = await ops(cli, "stuck", "--older-than", "0")
        assert code == 0, out
        # Never synced yet: asked once it has not moved for the policy's threshold (3600 s).
        for payment_id in (paid, waiting):
            updated_at = await intake.parts.pool.fetchval(
                "SELECT updated_at FROM payments WHERE payment_id = $1", payment_id
            )
            next_sync = (updated_at + timedelta(seconds=3600)).astimezone(UTC)
            row = row_of(out, payment_id)
            assert "checkout_open" in row and next_sync.strftime("%Y-%m-%d %H:%M:%S") in row, out

        code, out = await ops(cli, "reconcile", str(paid))
        assert code == 0 and "asked the provider about 1 payment" in out, out
        assert "succeeded" in row_of(out, paid) and "checkout_open -> succeeded" in row_of(out, paid), out
        code, out = await ops(cli, "reconcile", str(waiting))
        row = row_of(out, waiting)
        # Still open at the provider: nothing moves, and it is asked again a threshold later.
        sync_next_at = await intake.parts.pool.fetchval(
            "SELECT sync_next_at FROM payments WHERE payment_id = $1", waiting
        )
        assert code == 0 and "open" in row and "still checkout_open" in row, out
        assert sync_next_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in row, out
        code, out = await ops(cli, "reconcile", str(paid))
        assert code == 0 and "not asked" in row_of(out, paid) and "succeeded" in row_of(out, paid), out
    finally:
        await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": False})
    await intake.event(paid, "payment.succeeded")


async def test_the_gauges_show_the_oldest_open_payment_lag_and_outbox_depth(env):
    intake, _ = env
    payment_id, _ = await opened(intake, f"ACC-{uuid.uuid4().hex[:8]}")
    await asyncio.sleep(1.5)
    await intake.parts.gauges.once()
    oldest = REGISTRY.get_sample_value("payment_intake_oldest_open_payment_age_seconds")
    assert oldest is not None and oldest >= 1.5
    topic = intake.registry.payments_commands.name
    lags = [
        REGISTRY.get_sample_value("consumer_lag", {"consumer": "intake", "topic": topic, "partition": str(p)})
        for p in range(intake.registry.payments_commands.partitions)
    ]
    assert all(lag is not None for lag in lags) and sum(lags) == 0  # everything sent was applied
    assert REGISTRY.get_sample_value("outbox_depth", {"service": "payment-intake"}) is not None
    await intake.sandbox("POST", f"/sandbox/checkouts/{(await _checkout(intake, payment_id))}/fail")
    await intake.event(payment_id, "payment.failed")


async def test_an_operator_refunds_a_flagged_payment_the_policy_did_not(env):
    intake, cli = env
    payment_id, checkout_id = await opened(intake, f"ACC-{uuid.uuid4().hex[:8]}")
    await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete", json={"amount_minor": 700})
    await intake.event(payment_id, "payment.flagged")
    await asyncio.sleep(1)
    assert not [e for e in intake.events.for_payment(payment_id) if e.type == "payment.refund_requested"]
    code, out = await ops(cli, "refundable")
    assert code == 0 and str(payment_id) in out and "amount_mismatch" in out

    code, out = await ops(cli, "refund", str(payment_id))
    assert code == 0 and "requested for payment" in out, out
    requested = await intake.event(payment_id, "payment.refund_requested")
    assert (requested.payload.requested_by, requested.payload.amount.amount_minor) == ("ops", 700)
    await intake.event(payment_id, "payment.refunded")
    code, out = await ops(cli, "refund", str(payment_id))
    assert code == 1 and "already has a refund" in out
    refunds = (await intake.sandbox("GET", "/sandbox/refunds")).json()
    assert len([r for r in refunds if r["payment_id"] == str(payment_id)]) == 1
    flagged = await ops_module.flagged(intake.parts.pool)
    assert [(r["flag_reason"], r["refund_status"]) for r in flagged if r["payment_id"] == payment_id] == [
        ("amount_mismatch", "refunded")
    ]


async def test_money_taken_before_our_cancel_reached_the_provider_is_flagged_for_refund(env):
    intake, _ = env
    acc = f"ACC-{uuid.uuid4().hex[:8]}"
    payment_id, checkout_id = await opened(intake, acc)
    await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": True})
    try:
        await intake.sandbox("POST", f"/sandbox/checkouts/{checkout_id}/complete")  # we never hear of it
        cancel = CancelCheckout.originating(
            producer="portal",
            account_id=acc,
            payload=CancelCheckoutPayload(idempotency_key=str(uuid.uuid4()), payment_id=payment_id),
        )
        await intake.send(cancel)
        assert (await intake.answer(cancel)).type == "payment.cancelled"
        # Our cancel reaches the provider, which answers that the money already moved.
        flag = await intake.event(payment_id, "payment.flagged")
    finally:
        await intake.sandbox("PUT", "/sandbox/webhook-options", json={"drop": False})
    assert flag.payload.reason_code == "succeeded_after_end"
    row = await intake.parts.pool.fetchrow(
        "SELECT status, cancel_state, flag_reason, confirmed_minor FROM payments WHERE payment_id = $1",
        payment_id,
    )
    assert dict(row) == {
        "status": "cancelled",
        "cancel_state": "too_late",
        "flag_reason": "late_payment",
        "confirmed_minor": 1_000,
    }
    assert payment_id in {r["payment_id"] for r in await ops_module.refundable(intake.parts.pool)}
