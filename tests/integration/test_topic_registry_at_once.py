"""Services starting at once on a three-broker cluster all apply the topic registry.

Each service applies the registry when it starts, and a deployment starts them together.
On three brokers a topic one of them has just created can reach the others' answers a
moment later (described with no partitions), and two may grow a topic at once: either
used to stop a service at start ("Topic already has 6 partition(s)"), twice in the
secure cluster's test in CI. Here several appliers race on fresh prefixes, round after
round, each as a service does it at start (`apply_registry`: transient failures
retried); every one must finish, and every topic must have the registry's partitions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra import load_runtime
from kafka_tools import eventually
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import apply_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

APPLIERS = 6  # the services of a deployment with two instances each
ROUNDS = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    started = load_runtime().KafkaCluster(size=3)
    started.start(tmp_path_factory.mktemp("three-brokers"))
    try:
        yield started
    finally:
        started.stop()


async def test_appliers_starting_together_all_finish_with_the_registrys_partitions(cluster: Any) -> None:
    failed = []
    for _ in range(ROUNDS):
        registry = TopicRegistry(f"a{uuid.uuid4().hex[:6]}.")
        results = await asyncio.gather(
            *(apply_registry(cluster.bootstrap, registry) for _ in range(APPLIERS)), return_exceptions=True
        )
        failed += [repr(r) for r in results if isinstance(r, BaseException)]

        wanted = {name: partitions for name, (partitions, _) in registry.desired().items()}
        await eventually(
            lambda names=list(wanted): counts(cluster.bootstrap, names),
            lambda found, wanted=wanted: found == wanted,
            timeout=15,
            what="the registry's partition counts",
        )
    assert not failed, failed


async def counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Partitions per topic, as a broker describes them (each broker learns a change
    within moments, so the test asks until they agree)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
    finally:
        await admin.close()
