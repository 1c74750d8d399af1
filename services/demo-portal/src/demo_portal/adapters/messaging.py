"""Commands out and outcomes in, through FastStream.

One `KafkaBroker` per process: a publisher to `payments.commands` keyed by account id,
and one subscriber to `payments.events` without a consumer group (every partition,
from the end) that hands each outcome to the client library's `Correlator`.
FastStream's FastAPI integration (`FastStreamAPI`) starts and stops the broker with
the web app, and FastStream derives the AsyncAPI document from both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from faststream.specification import AsyncAPI
from prometheus_client import Counter, Histogram

from demo_portal.settings import SERVICE
from payments_contracts.envelope import Envelope
from payments_contracts.payments import PaymentCommand, PaymentEvent
from payments_contracts.topics import TopicRegistry
from payments_platform import tracing
from payments_portal_client import Correlator, KafkaSecurity, Outcome, OutcomeTimeout
from payments_portal_client.kafka import TIMING as KAFKA_TIMING

COMMANDS = Counter(
    "demo_portal_commands_total",
    "Pay and cancel commands sent, by command type and the outcome that answered it",
    ["command", "outcome"],
)
OUTCOME_SECONDS = Histogram(
    "demo_portal_outcome_seconds",
    "From publishing a command to its outcome (the checkout open, for an online payment)",
    ["command"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)


@dataclass
class Messaging:
    broker: KafkaBroker
    topics: TopicRegistry
    correlator: Correlator = field(default_factory=Correlator)
    subscriber: Any = None
    publisher: Any = None

    async def outcomes_ready(self) -> bool:
        """Every partition of `payments.events` assigned and its end offset resolved: from
        now on no outcome of a command sent is missed."""
        consumer = getattr(self.subscriber, "consumer", None)
        if consumer is None or not consumer.assignment():
            return False
        for partition in consumer.assignment():
            await consumer.position(partition)
        return True

    async def send(self, command: Envelope, *, until_checkout: bool, timeout_s: float) -> Outcome:
        future = self.correlator.expect(command.event_id, until_checkout=until_checkout)
        started = time.monotonic()
        try:
            await self.publisher.publish(command.model_dump(mode="json"), key=command.key())
            outcome = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            COMMANDS.labels(command.type, "timeout").inc()
            raise OutcomeTimeout(command.event_id, command.payload.idempotency_key) from None
        finally:
            self.correlator.forget(command.event_id)
        OUTCOME_SECONDS.labels(command.type).observe(time.monotonic() - started)
        COMMANDS.labels(command.type, type(outcome).__name__.lower()).inc()
        return outcome


def broker_security(kafka: KafkaSecurity) -> BaseSecurity | None:
    """The portal client's Kafka security in FastStream's terms (its `security=`)."""
    context = kafka.ssl_context()
    if not kafka.uses_sasl:
        return BaseSecurity(ssl_context=context) if context is not None else None
    assert kafka.sasl_username is not None and kafka.sasl_password is not None
    sasl = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return sasl[kafka.sasl_mechanism](
        kafka.sasl_username, kafka.sasl_password, ssl_context=context, use_ssl=context is not None
    )


def messaging(bootstrap: str, topics: TopicRegistry, kafka: KafkaSecurity | None = None) -> Messaging:
    middlewares: list[Any] = []
    if tracing.ENABLED:
        # FastStream's own OpenTelemetry middleware: a span per command published, its
        # W3C context in the record's headers (the services' consumers read it there).
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        middlewares.append(KafkaTelemetryMiddleware())
    broker = KafkaBroker(
        bootstrap,
        security=broker_security(kafka or KafkaSecurity()),
        client_id=SERVICE,
        enable_idempotence=True,
        **KAFKA_TIMING,
        # Per-message "Received/Processed" lines would drown the JSON logs.
        log_level=logging.DEBUG,
        middlewares=middlewares,
    )
    wiring = Messaging(broker, topics)

    wiring.publisher = broker.publisher(
        topics.payments_commands.name,
        title=f"{topics.payments_commands.name}:publish",
        description="Pay one invoice, pay selected invoices, pay the account balance, cancel a checkout."
        " Keyed by account id.",
        schema=PaymentCommand,
    )

    outcomes = broker.subscriber(
        topics.payments_events.name,
        group_id=None,
        auto_offset_reset="latest",
        ack_policy=AckPolicy.MANUAL,
        title=f"{topics.payments_events.name}:subscribe",
        description="Outcomes of this portal's commands, matched by correlation id; every"
        " partition from the end, no consumer group.",
    )

    @outcomes
    async def on_outcome(event: PaymentEvent) -> None:
        wiring.correlator.offer(event)

    wiring.subscriber = outcomes
    return wiring


def specification(broker: KafkaBroker) -> AsyncAPI:
    return AsyncAPI(
        broker,
        title=SERVICE,
        version="1.0.0",
        description="The reference portal backend: sends pay commands, follows their outcomes"
        " by correlation id.",
        schema_version="3.0.0",
    )
