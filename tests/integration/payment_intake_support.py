"""Helpers for payment-intake's integration tests: the service's parts and the sandbox
provider running in this event loop on free ports, a producer, and a reader of
`payments.events` that polls with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from message_builders import registered, synced
from pydantic import TypeAdapter
from standardwebhooks.webhooks import Webhook

from payment_intake.entrypoints.main import Parts, build_parts
from payment_intake.settings import PaymentIntakeSettings
from payments_contracts import Envelope, PaymentEvent
from payments_contracts.topics import TopicRegistry
from payments_platform.http_limits import server_limits
from payments_platform.sandbox import SANDBOX_WEBHOOK_SECRET
from sandbox_provider.entrypoints.http import build_app as build_sandbox
from sandbox_provider.settings import SandboxSettings
from system import free_port

EVENTS = TypeAdapter(PaymentEvent)


async def until(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` (sync or async) until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class EventLog:
    """Everything on `payments.events`, decoded, deduplicated by event_id."""

    events: list[Envelope] = field(default_factory=list)
    _seen: set[uuid.UUID] = field(default_factory=set)

    def add(self, value: bytes) -> None:
        event = EVENTS.validate_json(value)
        if event.event_id not in self._seen:
            self._seen.add(event.event_id)
            self.events.append(event)

    ANSWER_TYPES = (
        "payment.requested",
        "payment.rejected",
        "payment.cancelled",
        "payment.remittance_instructions",
    )

    def answers_to(self, command: Envelope) -> list[Envelope]:
        return [e for e in self.events if e.causation_id == command.event_id and e.type in self.ANSWER_TYPES]

    def of_type(self, type_: str) -> list[Envelope]:
        return [e for e in self.events if e.type == type_]

    def for_payment(self, payment_id: uuid.UUID) -> list[Envelope]:
        return [e for e in self.events if getattr(e.payload, "payment_id", None) == payment_id]


@dataclass
class Intake:
    parts: Parts
    registry: TopicRegistry
    producer: AIOKafkaProducer
    events: EventLog
    http_url: str
    sandbox_url: str
    http: httpx.AsyncClient

    async def send(self, *messages: Envelope) -> None:
        for message in messages:
            await self.producer.send(
                self.registry.for_message(message).name,
                message.model_dump_json().encode(),
                key=message.key(),
            )
        await self.producer.flush()

    async def invoice(
        self, account: str, number: str, open_minor: int, *, register: bool = True, **facts: Any
    ) -> None:
        """An invoice as invoice-sync would report it, registered with the sandbox too."""
        await self.send(synced(account, number, open_minor, **facts))
        if register:
            await self.sandbox(
                "POST",
                "/v1/invoices",
                json={
                    "account_id": account,
                    "invoice_number": number,
                    "amount_minor": max(open_minor, 1),
                    "currency": "USD",
                },
            )
            await self.send(registered(account, number, open_minor, version=facts.get("version", 1)))
        await self.facts_applied(account, number, version=facts.get("version", 1), registered=register)

    async def facts_applied(self, account: str, number: str, *, version: int, registered: bool) -> None:
        """Wait until the consumer applied the invoice's facts: `invoices` and
        `payments.commands` are different partitions, so a command sent next could
        otherwise be fetched before the facts it depends on."""

        async def applied() -> bool:
            row = await self.parts.pool.fetchrow(
                "SELECT erp_version, registered, registration_version FROM invoices"
                " WHERE account_id = $1 AND invoice_number = $2 AND synced",
                account,
                number,
            )
            if row is None or row["erp_version"] < version:
                return False
            return not registered or (row["registered"] and row["registration_version"] >= version)

        await until(applied, what=f"facts of {number} applied")

    async def answer(self, command: Envelope, timeout: float = 20.0) -> Envelope:
        answers = await until(lambda: self.events.answers_to(command), timeout=timeout, what="an answer")
        return answers[0]

    async def event(self, payment_id: uuid.UUID, type_: str, timeout: float = 20.0) -> Envelope:
        found = await until(
            lambda: [e for e in self.events.for_payment(payment_id) if e.type == type_],
            timeout=timeout,
            what=f"{type_} for {payment_id}",
        )
        return found[0]

    async def sandbox(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, self.sandbox_url + path, **kwargs)
        response.raise_for_status()
        return response


def sign(
    body: str,
    *,
    webhook_id: str | None = None,
    secret: str = SANDBOX_WEBHOOK_SECRET,
    at: datetime | None = None,
) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


async def _serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **server_limits(),
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started, timeout=10, what="http server start")
    return server, task


@contextlib.asynccontextmanager
async def running_intake(
    *,
    kafka_bootstrap: str,
    database_url: str,
    topics: TopicRegistry,
    policy: str = "full-payment-portal",
    checkout_ttl_s: int = 900,
    expiry_interval_s: float = 0.2,
    with_workers: bool = True,
    merchant_config: str | None = None,
    status_sync_after_s: int | None = None,
    refund_query_after_s: float = 60.0,
    webhook_secret: str | None = None,
    stripe_api_base: str | None = None,
) -> AsyncIterator[Intake]:
    intake_port, sandbox_port = free_port(), free_port()
    sandbox_app, sender = build_sandbox(
        SandboxSettings.model_validate(
            {
                "port": sandbox_port,
                "public_url": f"http://127.0.0.1:{sandbox_port}",
                # the field is read through its env alias only
                "SANDBOX_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{intake_port}/callbacks/provider",
                "webhook_time_scale": 0.01,  # the Standard Webhooks schedule, 100 times faster
                "stripe_webhook_url": f"http://127.0.0.1:{intake_port}/callbacks/stripe",
            }
        )
    )
    env: dict[str, Any] = {
        "PAYMENTS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PAYMENTS_DATABASE_URL": database_url,
        "PAYMENTS_TOPIC_PREFIX": topics.prefix,
        "PAYMENT_INTAKE_HTTP_PORT": intake_port,
        "PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{sandbox_port}",
        "PAYMENT_INTAKE_POLICY": policy,
        "PAYMENT_INTAKE_CHECKOUT_TTL_S": checkout_ttl_s,
        "PAYMENT_INTAKE_EXPIRY_INTERVAL_S": expiry_interval_s,
        "PAYMENT_INTAKE_MERCHANT_CONFIG": merchant_config,
        "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": status_sync_after_s,
        "PAYMENT_INTAKE_PROVIDER_WORKER_INTERVAL_S": 0.2,
        "PAYMENT_INTAKE_REFUND_QUERY_AFTER_S": refund_query_after_s,
        "PAYMENTS_SANDBOX": "1",
        "PAYMENTS_WEBHOOK_SECRET": webhook_secret,
        # Stripe merchants' requests: stripe-mock, or the sandbox's Stripe mode.
        "PAYMENTS_STRIPE_API_BASE": stripe_api_base or f"http://127.0.0.1:{sandbox_port}/stripe",
    }
    settings = PaymentIntakeSettings.model_validate({k: v for k, v in env.items() if v is not None})
    parts = await build_parts(settings)
    stopping = asyncio.Event()
    relay_stopping = asyncio.Event()
    sandbox_server, sandbox_task = await _serve(sandbox_app, sandbox_port)
    intake_server, intake_task = await _serve(parts.app, intake_port)
    tasks = [
        asyncio.create_task(parts.consumer.run()),
        asyncio.create_task(parts.relay.run(relay_stopping)),
    ]
    if with_workers:
        tasks += [
            asyncio.create_task(parts.opener.run(stopping)),
            asyncio.create_task(parts.expiry.run(stopping)),
            asyncio.create_task(parts.provider_worker.run(stopping)),
        ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, linger_ms=1)
    await producer.start()
    log = EventLog()
    reader = AIOKafkaConsumer(
        topics.payments_events.name,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await reader.start()

    async def read() -> None:
        async for record in reader:
            log.add(record.value or b"")

    read_task = asyncio.create_task(read())
    http = httpx.AsyncClient(timeout=10)
    try:
        await until(lambda: parts.consumer.ready and parts.relay.ready, timeout=30, what="consumer ready")
        yield Intake(
            parts,
            topics,
            producer,
            log,
            f"http://127.0.0.1:{intake_port}",
            f"http://127.0.0.1:{sandbox_port}",
            http,
        )
    finally:
        read_task.cancel()
        stopping.set()
        parts.consumer.stop()
        relay_stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(read_task, return_exceptions=True)
        await reader.stop()
        await producer.stop()
        await http.aclose()
        intake_server.should_exit = True
        sandbox_server.should_exit = True
        await asyncio.gather(intake_task, sandbox_task, return_exceptions=True)
        await sender.close()
        await parts.provider.close()
        await parts.pool.close()


@contextlib.asynccontextmanager
async def fresh_database(postgres_url: str) -> AsyncIterator[str]:
    """A database of our own for a module-scoped intake (the `database_url` fixture is per test)."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    base = postgres_url.rpartition("/")[0]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def fresh_topics(kafka_bootstrap: str) -> TopicRegistry:
    from payments_platform.topic_admin import ensure_topics

    registry = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka_bootstrap, registry)
    return registry
