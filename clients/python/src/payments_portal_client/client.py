"""`PortalClient`: send pay commands and await their outcomes, read pay status.

One client per process: one idempotent producer for `payments.commands` and one
subscription to `payments.events` that answers every command in flight. The
subscription has no consumer group: it is assigned every partition and starts at
the end, because a portal needs only the outcomes of the commands it sends from now
on, and a group per request (or per process) would cost a rebalance each.

Traces (OpenTelemetry's API only, no SDK): a command is published from a producer span
and carries its W3C trace context in `traceparent`/`tracestate` record headers, so the
services' spans for it join the caller's trace; reads carry the same headers. Without
an SDK configured by the application the span records nothing, and a trace context
already current (an instrumented web framework's request) is passed on all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Self
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry import propagate, trace

from payments_contracts.envelope import Envelope
from payments_contracts.money import Money
from payments_contracts.payments import PaymentMethod
from payments_contracts.topics import TopicRegistry

from . import commands
from .kafka import KafkaSecurity
from .outcomes import Accepted, Correlator, Ended, Outcome, Rejected, RemittanceDetails
from .read_api import ReadModelClient

log = logging.getLogger(__name__)

PayOutcome = Accepted | Rejected | RemittanceDetails | Ended


class OutcomeTimeout(TimeoutError):
    """No outcome within the timeout. Send the command again with the same idempotency
    key: it is applied at most once and the repeat gets the first outcome."""

    def __init__(self, command_id: UUID, idempotency_key: str) -> None:
        super().__init__(f"no outcome for command {command_id} (idempotency key {idempotency_key})")
        self.command_id = command_id
        self.idempotency_key = idempotency_key


class PortalClient:
    def __init__(
        self,
        *,
        kafka_bootstrap: str,
        read_api_url: str,
        api_key: str,
        topic_prefix: str = "",
        producer_name: str = commands.DEFAULT_PRODUCER,
        timeout_s: float = 10.0,
        kafka_security: KafkaSecurity | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._bootstrap = kafka_bootstrap
        self._kafka = (kafka_security or KafkaSecurity()).options()
        self._topics = TopicRegistry(topic_prefix)
        self._producer_name = producer_name
        self._timeout_s = timeout_s
        self._correlator = Correlator()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._listening: asyncio.Task[None] | None = None
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.read = ReadModelClient(read_api_url, api_key)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True, linger_ms=0, **self._kafka
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            **self._kafka,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        topic = self._topics.payments_events.name
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            partitions = await self._wait_for_partitions(self._consumer, topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        # Resolve the end offsets now: an outcome published after this point is never missed.
        for tp in assigned:
            await self._consumer.position(tp)
        self._listening = asyncio.create_task(self._listen(self._consumer), name="portal-client-outcomes")

    @staticmethod
    async def _wait_for_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        for _ in range(50):
            await consumer._client.force_metadata_update()  # no public way to refresh one topic
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} does not exist")

    async def stop(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.read.close()

    async def _listen(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    try:
                        self._correlator.offer_raw(record.value)
                    except ValueError:
                        log.warning("undecodable outcome at %s/%s", record.partition, record.offset)

    # --- commands --------------------------------------------------------------------------

    async def send(
        self, command: Envelope, *, until_checkout: bool = False, timeout_s: float | None = None
    ) -> Outcome:
        """Publish a command and await its outcome (see `Correlator`)."""
        if self._producer is None:
            raise RuntimeError("PortalClient is not started")
        future = self._correlator.expect(command.event_id, until_checkout=until_checkout)
        topic = self._topics.payments_commands.name
        try:
            with self._tracer.start_as_current_span(
                f"send {topic}",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                    "messaging.message.id": str(command.event_id),
                    "payments.message.type": command.type,
                },
            ):
                await self._producer.send_and_wait(
                    topic, command.model_dump_json().encode(), key=command.key(), headers=trace_headers()
                )
            return await asyncio.wait_for(future, timeout_s or self._timeout_s)
        except TimeoutError:
            raise OutcomeTimeout(command.event_id, command.payload.idempotency_key) from None
        finally:
            self._correlator.forget(command.event_id)

    async def pay_invoice(
        self,
        account_id: str,
        invoice_number: str,
        method: PaymentMethod,
        *,
        amount: Money | None = None,
        idempotency_key: str | None = None,
        wait_for_checkout: bool = True,
        timeout_s: float | None = None,
    ) -> PayOutcome:
        command = commands.pay_invoice(
            account_id,
            invoice_number,
            method,
            amount=amount,
            idempotency_key=idempotency_key,
            producer=self._producer_name,
        )
        return await self.send(command, until_checkout=wait_for_checkout, timeout_s=timeout_s)

    async def pay_selected(
        self,
        account_id: str,
        invoices: Sequence[tuple[str, Money | None]],
        method: PaymentMethod,
        *,
        idempotency_key: str | None = None,
        wait_for_checkout: bool = True,
        timeout_s: float | None = None,
    ) -> PayOutcome:
        command = commands.pay_selected(
            account_id, invoices, method, idempotency_key=idempotency_key, producer=self._producer_name
        )
        return await self.send(command, until_checkout=wait_for_checkout, timeout_s=timeout_s)

    async def pay_account_balance(
        self,
        account_id: str,
        method: PaymentMethod,
        *,
        currency: str | None = None,
        idempotency_key: str | None = None,
        wait_for_checkout: bool = True,
        timeout_s: float | None = None,
    ) -> PayOutcome:
        command = commands.pay_account_balance(
            account_id,
            method,
            currency=currency,
            idempotency_key=idempotency_key,
            producer=self._producer_name,
        )
        return await self.send(command, until_checkout=wait_for_checkout, timeout_s=timeout_s)

    async def cancel_checkout(
        self,
        account_id: str,
        payment_id: UUID,
        *,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Ended | Rejected:
        command = commands.cancel_checkout(
            account_id, payment_id, idempotency_key=idempotency_key, producer=self._producer_name
        )
        outcome = await self.send(command, timeout_s=timeout_s)
        if not isinstance(outcome, Ended | Rejected):
            raise RuntimeError(f"unexpected answer to a cancel: {outcome!r}")
        return outcome


def trace_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka record headers (W3C `traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]
