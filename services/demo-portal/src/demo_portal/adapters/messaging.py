"""Commands out and outcomes in, through FastStream.

One `KafkaRouter` per process: a publisher to `payments.commands` keyed by account id,
and one subscriber to `payments.events` without a consumer group (every partition,
from the end) that hands each outcome to the client library's `Correlator`. The
router is also the FastAPI router the pages are served from, and FastStream derives
the AsyncAPI document from both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faststream.kafka.fastapi import KafkaRouter
from faststream.middlewares import AckPolicy

from demo_portal.settings import SERVICE
from payments_portal_client import Correlator, Outcome, OutcomeTimeout
from payments_shared.contracts.envelope import Envelope
from payments_shared.contracts.payments import PaymentCommand, PaymentEvent
from payments_shared.topics import TopicRegistry


@dataclass
class Messaging:
    router: KafkaRouter
    topics: TopicRegistry
    correlator: Correlator = field(default_factory=Correlator)

    async def send(self, command: Envelope, *, until_checkout: bool, timeout_s: float) -> Outcome:
        future = self.correlator.expect(command.event_id, until_checkout=until_checkout)
        try:
            await self.router.broker.publish(
                command.model_dump(mode="json"),
                topic=self.topics.payments_commands.name,
                key=command.key(),
            )
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise OutcomeTimeout(command.event_id, command.payload.idempotency_key) from None
        finally:
            self.correlator.forget(command.event_id)


def messaging(bootstrap: str, topics: TopicRegistry) -> Messaging:
    router = KafkaRouter(
        bootstrap,
        client_id=SERVICE,
        enable_idempotence=True,
        schema_url="/asyncapi",
        specification_tags=[{"name": "payments"}],
    )
    wiring = Messaging(router, topics)

    # Declared for the AsyncAPI document: what this portal sends and to which topic.
    router.publisher(
        topics.payments_commands.name,
        title=f"{topics.payments_commands.name}:publish",
        description="Pay one invoice, pay selected invoices, pay the account balance, cancel a checkout."
        " Keyed by account id.",
        schema=PaymentCommand,
    )

    @router.subscriber(
        topics.payments_events.name,
        group_id=None,
        auto_offset_reset="latest",
        ack_policy=AckPolicy.MANUAL,
        title=f"{topics.payments_events.name}:subscribe",
        description="Outcomes of this portal's commands, matched by correlation id; every"
        " partition from the end, no consumer group.",
    )
    async def on_outcome(event: PaymentEvent) -> None:
        wiring.correlator.offer(event)

    return wiring
