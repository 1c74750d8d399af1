"""How the services' consumers sit in their groups, on the real broker.

A member must join each rebalance with one JoinGroup request. aiokafka 0.14 sends one
per listed assignor, each with different metadata; the broker restarts the rebalance
for each, and after a broker restart two static members were seen ping-ponging like
that for minutes while one of them never got a partition back.

A member must also get the same partition numbers of every topic it reads: the topics
are keyed by account with one partition count, and an account's invoices and payment
events projected by two instances park each other's work. The sticky assignor, with a
second member joining a running one, handed one all of the first topic and the other all
of the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from kafka_tools import eventually
from payments_contracts.topics import TopicRegistry
from payments_platform.membership import MembershipSettings, consumer_options

pytestmark = pytest.mark.integration


class Member(ConsumerRebalanceListener):  # type: ignore[misc]
    """A consumer built with the services' group options that counts its accepted joins."""

    def __init__(self, bootstrap: str, group: str, topic: str | list[str], instance: str) -> None:
        settings = MembershipSettings(PAYMENTS_INSTANCE_ID=instance)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            **consumer_options(settings),
        )
        self.topics = [topic] if isinstance(topic, str) else topic
        self.joined: Counter[str] = Counter()
        self.assignments: list[set[TopicPartition]] = []
        client = self.consumer._client
        send = client.send

        async def counting_send(node_id: Any, request: Any, **kwargs: Any) -> Any:
            response = await send(node_id, request, **kwargs)
            # Only joins the broker accepted: a retry while a fresh broker is still
            # loading its group metadata is not a second join.
            if getattr(response, "error_code", None) == 0:
                self.joined[type(request).__name__] += 1
            return response

        client.send = counting_send

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assignments.append(set(assigned))

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=self)

    async def poll(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.consumer.getmany(timeout_ms=100)


@contextlib.asynccontextmanager
async def in_turn(bootstrap: str, read: str | list[str]) -> AsyncIterator[tuple[Member, Member]]:
    """Two members of one new group: the first alone until it owns everything, then the
    second joins (a rollout, a scale-up, the bench); both polling until the test ends."""
    group = f"membership-{uuid.uuid4().hex[:8]}"
    first = Member(bootstrap, group, read, "svc-0")
    second = Member(bootstrap, group, read, "svc-1")
    stopping = asyncio.Event()
    pollers: list[asyncio.Task[None]] = []
    try:
        await first.start()
        pollers.append(asyncio.create_task(first.poll(stopping)))
        await eventually(lambda: asyncio.sleep(0, first.assignments), bool, what="first member assigned")
        await second.start()
        pollers.append(asyncio.create_task(second.poll(stopping)))
        yield first, second
    finally:
        stopping.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        for member in (first, second):
            await member.consumer.stop()


async def test_each_member_sends_one_join_per_rebalance_and_the_group_settles(
    kafka_bootstrap: str, topics: TopicRegistry
) -> None:
    topic = topics.erp_invoices.name
    async with in_turn(kafka_bootstrap, topic) as (first, second):

        def shared(_: object) -> bool:
            mine = first.assignments[-1] if first.assignments else set()
            theirs = second.assignments[-1] if second.assignments else set()
            return bool(mine) and bool(theirs) and not mine & theirs

        await eventually(lambda: asyncio.sleep(0), shared, what="partitions shared by both")
        await asyncio.sleep(3)  # six heartbeats: any restarted rebalance shows up here

        for member in (first, second):
            assert member.joined["JoinGroupRequest"] == len(member.assignments), (
                member.joined,
                member.assignments,
            )
        assert len(first.assignments) == 2 and len(second.assignments) == 1
        assert first.assignments[-1] | second.assignments[-1] == {
            TopicPartition(topic, p) for p in range(topics.erp_invoices.partitions)
        }


async def test_a_member_gets_the_same_partitions_of_every_topic_it_reads(
    kafka_bootstrap: str, topics: TopicRegistry
) -> None:
    read = [topics.invoices.name, topics.payments_events.name]
    assert topics.invoices.partitions == topics.payments_events.partitions
    async with in_turn(kafka_bootstrap, read) as (first, second):
        await eventually(lambda: asyncio.sleep(0, second.assignments), bool, what="second member assigned")
        await eventually(
            lambda: asyncio.sleep(0, len(first.assignments)), lambda n: n >= 2, what="first re-assigned"
        )
        for member in (first, second):
            owned = member.assignments[-1]
            numbers = {t: sorted(tp.partition for tp in owned if tp.topic == t) for t in read}
            assert numbers[read[0]], numbers  # a share of each topic, not all of one
            assert numbers[read[0]] == numbers[read[1]], numbers
        assert not first.assignments[-1] & second.assignments[-1]
        assert len(first.assignments[-1] | second.assignments[-1]) == 2 * topics.invoices.partitions
