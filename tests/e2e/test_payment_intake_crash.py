"""Kill payment-intake (SIGKILL) at random moments while commands and callbacks flow, restart
it, and check: every command answered exactly once, no payment lost, none doubled."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processes import Process

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from message_builders import pay_invoice, registered, synced
from payment_intake_support import EventLog, free_port, until

from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ACCOUNTS = 24
STREAM_S = 18.0


async def _new_database(postgres_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{postgres_url.rpartition('/')[0]}/{name}"


async def test_killed_at_random_points_no_payment_lost_none_doubled_every_command_answered_once(
    kafka_bootstrap, postgres_url, tmp_path
):
    rng = random.Random(int(os.environ.get("PAYMENT_INTAKE_CRASH_SEED", "4")))
    database = await _new_database(postgres_url)
    registry = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka_bootstrap, registry)
    intake_port, sandbox_port = free_port(), free_port()
    base_env = {
        **os.environ,
        "PAYMENTS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PAYMENTS_DATABASE_URL": database,
        "PAYMENTS_TOPIC_PREFIX": registry.prefix,
        "PAYMENTS_SANDBOX": "1",  # the sandbox provider's published webhook secret
    }
    sandbox = Process(
        [str(BIN / "sandbox-provider")],
        {
            **base_env,
            "SANDBOX_PROVIDER_PORT": str(sandbox_port),
            "SANDBOX_PROVIDER_PUBLIC_URL": f"http://127.0.0.1:{sandbox_port}",
            "SANDBOX_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{intake_port}/callbacks/provider",
            "SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01",  # 5 min -> 3 s: kills outlast 5 s
        },
        tmp_path / "sandbox.log",
    )
    intake = Process(
        [str(BIN / "payment-intake")],
        {
            **base_env,
            "PAYMENT_INTAKE_HTTP_PORT": str(intake_port),
            "PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{sandbox_port}",
            "PAYMENT_INTAKE_CHECKOUT_LEASE_S": "2",
            "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": "5",
            "PAYMENTS_CONSUMER_BATCH_SIZE": "50",
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
    commands = []
    completed: set[str] = set()
    try:
        await until(
            lambda: _up(http, f"http://127.0.0.1:{sandbox_port}/health/live"), timeout=30, what="sandbox"
        )
        invoices = [(f"CR-{i}", f"INV-{i}") for i in range(ACCOUNTS)]
        for acc, number in invoices:
            await http.post(
                f"http://127.0.0.1:{sandbox_port}/v1/invoices",
                json={"account_id": acc, "invoice_number": number, "amount_minor": 10_000, "currency": "USD"},
            )
            await send(synced(acc, number, 10_000))
            await send(registered(acc, number, 10_000))

        async def stream() -> None:
            deadline = time.monotonic() + STREAM_S
            while time.monotonic() < deadline:
                acc, number = rng.choice(invoices)
                command = pay_invoice(acc, number, method=None)
                commands.append(command)
                await send(command)
                if rng.random() < 0.3:  # at-least-once delivery from the portal
                    await send(command)
                await asyncio.sleep(rng.uniform(0.01, 0.06))

        async def settle_checkouts() -> None:
            while True:
                try:
                    listed = (await http.get(f"http://127.0.0.1:{sandbox_port}/sandbox/checkouts")).json()
                except httpx.HTTPError:
                    listed = []
                for checkout in listed:
                    if checkout["status"] == "open" and checkout["checkout_id"] not in completed:
                        completed.add(checkout["checkout_id"])
                        action = "complete" if rng.random() < 0.7 else "fail"
                        await http.post(
                            f"http://127.0.0.1:{sandbox_port}/sandbox/checkouts/"
                            f"{checkout['checkout_id']}/{action}"
                        )
                await asyncio.sleep(0.1)

        async def chaos() -> None:
            while True:
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                intake.kill()
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                intake.start()

        settling = asyncio.create_task(settle_checkouts())
        killing = asyncio.create_task(chaos())
        await stream()
        killing.cancel()
        await asyncio.gather(killing, return_exceptions=True)
        if not intake.alive:
            intake.start()
        assert intake.starts >= 4, "the service was not killed often enough to prove anything"

        await until(lambda: all(events.answers_to(c) for c in commands), timeout=60, what="every answer")

        def settled() -> bool:
            requested = {e.payload.payment_id for e in events.of_type("payment.requested")}
            ended = {
                e.payload.payment_id
                for e in events.events
                if e.type in ("payment.succeeded", "payment.failed", "payment.expired", "payment.cancelled")
            }
            return requested <= ended

        await until(settled, timeout=60, what="every payment ended")
        settling.cancel()
        await asyncio.gather(settling, return_exceptions=True)

        for command in commands:
            assert len(events.answers_to(command)) == 1, "a command answered more than once"
        succeeded = events.of_type("payment.succeeded")
        per_payment: dict[uuid.UUID, int] = {}
        per_invoice: dict[str, int] = {}
        for event in succeeded:
            per_payment[event.payload.payment_id] = per_payment.get(event.payload.payment_id, 0) + 1
            for allocation in event.payload.allocations:
                per_invoice[allocation.invoice_number] = per_invoice.get(allocation.invoice_number, 0) + 1
        assert all(n == 1 for n in per_payment.values()), "a payment succeeded twice"
        assert all(n == 1 for n in per_invoice.values()), "an invoice was paid twice"
        checkouts = (await http.get(f"http://127.0.0.1:{sandbox_port}/sandbox/checkouts")).json()
        paid_at_provider = {uuid.UUID(c["payment_id"]) for c in checkouts if c["status"] == "succeeded"}
        assert paid_at_provider == set(per_payment), "a payment the provider took was lost"
        assert len({c["payment_id"] for c in checkouts}) == len(checkouts)
        assert len(commands) > 200 and len(succeeded) > 5
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


async def _up(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False
