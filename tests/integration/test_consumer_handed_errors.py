"""Errors aiokafka's group coordinator hands to the next poll, on real Kafka and PostgreSQL.

aiokafka reports some of its own failures by raising them from the next `getmany`, then
goes on: an offset fetch answered "coordinator not available" (a broker handing
`__consumer_offsets` over) arrives as a bare KafkaError that says it is not retriable.
The consumer polls past such an error and applies what follows; a refusal (a missing
grant) stops it, so a misconfiguration shows instead of spinning. The error is handed
over here the way aiokafka does it, through its coordinator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError

from effects_consumer import count_effects, effects_consumer, install_effects
from erp_invoices import erp_invoice
from kafka_tools import eventually, produce
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import TransactionalConsumer

pytestmark = pytest.mark.integration


@dataclass
class Running:
    consumer: TransactionalConsumer
    task: asyncio.Task[None]
    pool: asyncpg.Pool

    async def applied(self) -> int:
        """Rows applied; the consumer's own failure, raised, once it has ended."""
        if self.task.done():
            self.task.result()
            raise AssertionError("the consumer ended without an error")
        count, distinct = await count_effects(self.pool)
        assert count == distinct, "a message applied twice"
        return count

    def hand_over(self, error: KafkaError) -> asyncio.Future[object]:
        """What aiokafka's coordinator does with an error of its own: the next poll
        raises it; the returned future is done once a poll has taken it."""
        inner = self.consumer._consumer
        assert inner is not None
        return asyncio.ensure_future(inner._coordinator._push_error_to_user(error))


@pytest.fixture
async def running(kafka_bootstrap: str, database_url: str, topics: TopicRegistry) -> AsyncIterator[Running]:
    pool = await open_pool(database_url, "handed", install=install_effects)
    consumer = effects_consumer(pool, kafka_bootstrap, topics, topics.erp_invoices, name="handed")
    task = asyncio.create_task(consumer.run())
    try:
        yield Running(consumer, task, pool)
    finally:
        consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()


def invoices(first: int, n: int) -> list[ErpInvoiceUpserted]:
    return [erp_invoice(f"ACC-{i % 5}", f"INV-{i:04d}") for i in range(first, first + n)]


async def test_a_coordinator_error_handed_to_the_poll_is_polled_past(
    running: Running, kafka_bootstrap: str, topics: TopicRegistry
) -> None:
    await produce(kafka_bootstrap, topics.erp_invoices.name, invoices(0, 20))
    await eventually(running.applied, lambda n: n == 20, timeout=60, what="the first 20 applied")

    taken = running.hand_over(KafkaError("GroupCoordinatorNotAvailableError (offset fetch)"))
    await asyncio.wait_for(taken, 10)  # a poll raised it
    await produce(kafka_bootstrap, topics.erp_invoices.name, invoices(20, 20))

    await eventually(running.applied, lambda n: n == 40, timeout=60, what="the next 20 applied")
    assert not running.task.done(), running.task
    assert running.consumer.in_group


async def test_a_refusal_handed_to_the_poll_stops_the_consumer(
    running: Running, kafka_bootstrap: str, topics: TopicRegistry
) -> None:
    await produce(kafka_bootstrap, topics.erp_invoices.name, invoices(0, 5))
    await eventually(running.applied, lambda n: n == 5, timeout=60, what="the first 5 applied")

    running.hand_over(GroupAuthorizationFailedError("handed"))

    with pytest.raises(GroupAuthorizationFailedError):
        await asyncio.wait_for(running.task, 30)
