"""Applying the topic registry to a cluster: create what is missing, align configs and
partition counts, wait for leaders. The registry itself (names, shapes, retention) is
part of the published language in payments_contracts.topics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError, TopicAlreadyExistsError, for_code

from payments_contracts.topics import TopicRegistry

from .kafka import client_options
from .messaging.transient import retrying
from .settings import CommonSettings

# What a broker answers about a topic whose creation has not reached it yet: no error and
# no partitions, "unknown topic" or "leader not available". Anything else (a missing
# grant) is raised as it is.
NOT_YET_KNOWN = (0, 3, 5)


def replication(brokers: int, told: int | None = None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`.

    Three copies where there are three brokers, and a write acknowledged (acks=all) only
    once two hold it: one broker can die, or restart, without a write lost or refused.
    A single broker (the local default) can only keep one copy.
    """
    factor = told if told is not None else min(3, brokers)
    return factor, (2 if factor >= 3 else 1)


async def ensure_topics(
    bootstrap: str, registry: TopicRegistry, *, replication_factor: int | None = None
) -> list[str]:
    """Create missing topics and align configs and partition counts. Safe to repeat.

    The replication factor is learned from the cluster's size unless told
    (PAYMENTS_TOPIC_REPLICATION_FACTOR); an existing topic keeps the factor it was made
    with (changing it is a reassignment, an operator's decision), its min.insync.replicas
    follows the registry's choice."""
    admin = AIOKafkaAdminClient(**client_options(bootstrap), client_id="topic-registry")
    await admin.start()
    changed: list[str] = []
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, min_isr = replication(brokers, replication_factor)
        existing = set(await admin.list_topics())
        wanted = {
            name: (partitions, configs | {"min.insync.replicas": str(min_isr)})
            for name, (partitions, configs) in registry.desired().items()
        }
        missing = [
            NewTopic(name, partitions, factor, topic_configs=configs)
            for name, (partitions, configs) in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another service may create them first; configs are aligned below either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            changed += [t.name for t in missing]
        present = [name for name in wanted if name in existing]
        if present:
            changed += await _grow(admin, {name: wanted[name][0] for name in present})
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted[name][1]) for name in present]
            )
        if changed:
            await _until_leaders_elected(admin, list(wanted))
    finally:
        await admin.close()
    return changed


async def apply_registry(
    bootstrap: str, registry: TopicRegistry, *, replication_factor: int | None = None
) -> list[str]:
    """`ensure_topics` as a service does it at start: a transient failure (the broker
    still starting, a leader moving) is retried until it passes."""
    async for attempt in retrying("ensure topics"):
        with attempt:
            return await ensure_topics(bootstrap, registry, replication_factor=replication_factor)
    raise AssertionError("retrying stops only by returning or raising")


async def _grow(admin: Any, counts: dict[str, int]) -> list[str]:
    """Raise partition counts below `counts`; the topics grown.

    Services start at once and apply the same registry: a topic another one has just
    created may not have reached the broker that answers yet (described with an error
    and no partitions), and another one may grow a topic at the same moment. Neither is
    a short topic: one not yet known is asked about again once it has leaders, and a
    refusal to grow counts only if the topic is still short afterwards."""
    described = await admin.describe_topics(list(counts))
    for d in described:
        if d["error_code"] not in NOT_YET_KNOWN:
            raise for_code(d["error_code"])(d["topic"])
    unknown = [d["topic"] for d in described if d["error_code"] != 0 or not d["partitions"]]
    if unknown:
        await _until_leaders_elected(admin, unknown)
        described = await admin.describe_topics(list(counts))
    short = {
        d["topic"]: NewPartitions(counts[d["topic"]])
        for d in described
        if len(d["partitions"]) < counts[d["topic"]]
    }
    if not short:
        return []
    try:
        await admin.create_partitions(short)
    except InvalidPartitionsError:
        if not await _until_counts_shown(admin, {name: counts[name] for name in short}):
            raise
    return list(short)


async def _until_counts_shown(admin: Any, counts: dict[str, int], timeout_s: float = 30.0) -> bool:
    """Whether every topic is described with at least its count within `timeout_s`. Each
    describe may be answered by another broker, one that has not heard of the change yet,
    so one answer proves nothing; the controller's refusal says the count is there."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(list(counts))
        if all(len(d["partitions"]) >= counts[d["topic"]] for d in described):
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)


async def _until_leaders_elected(admin: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """New partitions refuse writes until they have a leader; wait for that, not a sleep."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        if all(
            d["error_code"] == 0 and d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
            for d in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic partitions without a leader after {timeout_s}s")
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply the topic registry to a Kafka cluster")
    parser.add_argument("--bootstrap", default=None, help="defaults to PAYMENTS_KAFKA_BOOTSTRAP")
    args = parser.parse_args()
    settings = CommonSettings()
    registry = TopicRegistry(settings.topic_prefix, settings.topic_partitions)
    changed = asyncio.run(
        ensure_topics(
            args.bootstrap or settings.kafka_bootstrap,
            registry,
            replication_factor=settings.topic_replication_factor,
        )
    )
    for name, (partitions, configs) in registry.desired().items():
        mark = "created/updated" if name in changed else "ok"
        print(f"{name:28} partitions={partitions} {configs} [{mark}]")
