"""Kill payment-intake (SIGKILL) at random moments while it refunds money taken in another
amount or after a cancellation, restart it, and check that every such payment is refunded
exactly once at the provider and announced exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from test_payment_intake_crash import BIN, _new_database, _up

from processes import Process

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from message_builders import pay_invoice, registered, synced
from payment_intake_support import EventLog, free_port, until

from payments_contracts.payments import CancelCheckout, CancelCheckoutPayload, CardOnline
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics

pytestmark = pytest.mark.e2e

# The suite's short version; PAYMENTS_CHAOS=full (make chaos) runs the long one.
FULL = os.environ.get("PAYMENTS_CHAOS") == "full"
PAYMENTS = 24 if FULL else 8
KILLS = 6 if FULL else 2


async def test_killed_while_refunding_every_payment_is_refunded_exactly_once(
    kafka_bootstrap, postgres_url, tmp_path
):
    rng = random.Random(int(os.environ.get("PAYMENT_INTAKE_CRASH_SEED", "7")))
    database = await _new_database(postgres_url)
    registry = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka_bootstrap, registry)
    intake_port, sandbox_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    intake_url = f"http://127.0.0.1:{intake_port}"
    base_env = {
        **os.environ,
        "PAYMENTS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PAYMENTS_DATABASE_URL": database,
        "PAYMENTS_TOPIC_PREFIX": registry.prefix,
        "PAYMENTS_SANDBOX": "1",
    }
    sandbox = Process(
        [str(BIN / "sandbox-provider")],
        {
            **base_env,
            "SANDBOX_PROVIDER_PORT": str(sandbox_port),
            "SANDBOX_PROVIDER_PUBLIC_URL": sandbox_url,
            "SANDBOX_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{intake_port}/callbacks/provider",
            "SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01",
            "SANDBOX_PROVIDER_REFUND_SETTLE_S": "0.5",
        },
        tmp_path / "sandbox.log",
    )
    intake = Process(
        [str(BIN / "payment-intake")],
        {
            **base_env,
            "PAYMENT_INTAKE_HTTP_PORT": str(intake_port),
            "PAYMENTS_PROVIDER_URL": sandbox_url,
            "PAYMENT_INTAKE_POLICY": "partial-multi-portal",
            "PAYMENT_INTAKE_CHECKOUT_LEASE_S": "2",
            "PAYMENT_INTAKE_PROVIDER_LEASE_S": "2",
            "PAYMENT_INTAKE_PROVIDER_WORKER_INTERVAL_S": "0.3",
            "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": "2",
            "PAYMENT_INTAKE_REFUND_QUERY_AFTER_S": "2",
        },
        tmp_path / "intake.log",
    )
    sandbox.start()
    intake.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, linger_ms=1)
    await producer.start()
    events = EventLog()
    reader = AIOKafkaConsumer(
        registry.payments_events.name,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await reader.start()

    async def read() -> None:
        async for record in reader:
            events.add(record.value or b"")

    async def send(message) -> None:
        await producer.send_and_wait(
            registry.for_message(message).name, message.model_dump_json().encode(), key=message.key()
        )

    reading = asyncio.create_task(read())
    http = httpx.AsyncClient(timeout=5)
    try:
        await until(lambda: _up(http, f"{sandbox_url}/health/live"), timeout=30, what="sandbox")
        # Each refund call takes a while, so kills land between claim, call and record.
        await http.post(
            f"{sandbox_url}/sandbox/faults", json={"target": "refund", "mode": "slow", "delay_s": 0.4}
        )
        invoices = [(f"CR-{i}", f"INV-{i}") for i in range(PAYMENTS)]
        for acc, number in invoices:
            await http.post(
                f"{sandbox_url}/v1/invoices",
                json={"account_id": acc, "invoice_number": number, "amount_minor": 10_000, "currency": "USD"},
            )
            await send(synced(acc, number, 10_000))
            await send(registered(acc, number, 10_000))

        async def facts_applied() -> bool:
            conn = await asyncpg.connect(database)
            try:
                return (
                    await conn.fetchval(
                        "SELECT count(*) FROM payment_intake.invoices WHERE synced AND registered"
                    )
                    == PAYMENTS
                )
            except asyncpg.UndefinedTableError:
                return False
            finally:
                await conn.close()

        await until(facts_applied, timeout=60, what="invoice facts applied")

        commands = [pay_invoice(acc, number, method=CardOnline()) for acc, number in invoices]
        for command in commands:
            await send(command)
        await until(lambda: all(events.answers_to(c) for c in commands), timeout=120, what="every answer")
        payment_ids = [events.answers_to(c)[0].payload.payment_id for c in commands]

        def checkout_of(payment_id: uuid.UUID) -> str | None:
            opened = [e for e in events.for_payment(payment_id) if e.type == "payment.checkout_opened"]
            return opened[0].payload.checkout_id if opened else None

        await until(
            lambda: all(checkout_of(p) for p in payment_ids), timeout=120, what="every checkout opened"
        )

        async def chaos() -> None:
            # Kill only a process that is up (a loaded machine starts one slowly), at a
            # random moment of its work.
            for _ in range(KILLS):
                await until(lambda: _up(http, f"{intake_url}/health/ready"), timeout=120, what="intake up")
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                intake.kill()
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                intake.start()

        killing = asyncio.create_task(chaos())
        cancels = []
        for i, (acc, _) in enumerate(invoices):
            if i % 2 == 0:  # the customer cancels, then pays on the cancelled checkout anyway
                cancels.append(
                    CancelCheckout.originating(
                        producer="portal",
                        account_id=acc,
                        payload=CancelCheckoutPayload(
                            idempotency_key=str(uuid.uuid4()), payment_id=payment_ids[i]
                        ),
                    )
                )
                await send(cancels[-1])
        await until(
            lambda: all(events.answers_to(c) for c in cancels), timeout=120, what="every cancel answered"
        )
        for i, payment_id in enumerate(payment_ids):
            checkout_id = checkout_of(payment_id)
            body = {"amount_minor": 9_000} if i % 2 else {"late": True}  # another amount, or late
            response = await http.post(f"{sandbox_url}/sandbox/checkouts/{checkout_id}/complete", json=body)
            assert response.status_code == 200, response.text
            await asyncio.sleep(rng.uniform(0.1, 0.8))
        await until(
            lambda: {e.payload.payment_id for e in events.of_type("payment.refunded")} >= set(payment_ids),
            timeout=180,
            what="every payment refunded",
        )
        await killing
        assert intake.starts == KILLS + 1

        requested_ids = set(payment_ids)
        await asyncio.sleep(3)  # anything doubled would show up now

        refunds = (await http.get(f"{sandbox_url}/sandbox/refunds")).json()
        per_payment: dict[str, list[dict]] = {}
        for r in refunds:
            per_payment.setdefault(r["payment_id"], []).append(r)
        assert {uuid.UUID(p) for p in per_payment} == requested_ids
        assert all(len(rs) == 1 for rs in per_payment.values()), (
            "a payment was refunded twice at the provider"
        )
        assert all(rs[0]["status"] == "succeeded" for rs in per_payment.values())
        for kind in ("payment.refund_requested", "payment.refunded"):
            counts: dict[uuid.UUID, int] = {}
            for e in events.of_type(kind):
                counts[e.payload.payment_id] = counts.get(e.payload.payment_id, 0) + 1
            assert set(counts.values()) == {1}, f"{kind} announced more than once for a payment"
        assert not events.of_type("payment.refund_failed")
        assert not events.of_type("payment.succeeded")
        amounts = {r["payment_id"]: r["amount_minor"] for r in refunds}
        for i, (acc, _) in enumerate(invoices):
            [payment] = [e for e in events.of_type("payment.requested") if e.account_id == acc]
            assert amounts[str(payment.payload.payment_id)] == (9_000 if i % 2 else 10_000)
        print(f"\nrefunds: {len(refunds)} payments, {intake.starts - 1} kills, each refunded once")
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await reader.stop()
        await producer.stop()
        await http.aclose()
        intake.stop()
        sandbox.stop()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database.rpartition("/")[2]}" WITH (FORCE)')
        finally:
            await admin.close()
