"""Shared fixtures: real Kafka and PostgreSQL for integration and end-to-end tests.

Endpoints come from PAYMENTS_KAFKA_BOOTSTRAP / PAYMENTS_DATABASE_URL when set, else
from testcontainers when a Docker engine answers, else from the local runtime in
deploy/ (Kafka from Maven Central jars, PostgreSQL from the machine's packages).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from database_tools import fresh_database
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics


@pytest.fixture(scope="session")
def infra_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def kafka_bootstrap(infra_root: Path) -> Iterator[str]:
    import infra

    endpoint, stop = infra.kafka_endpoint(infra_root)
    yield endpoint
    stop()


@pytest.fixture(scope="session")
def postgres_url(infra_root: Path) -> Iterator[str]:
    import infra

    endpoint, stop = infra.postgres_endpoint(infra_root)
    yield endpoint
    stop()


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty database for one test."""
    async with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
async def topics(kafka_bootstrap: str) -> AsyncIterator[TopicRegistry]:
    """The whole topic registry under a prefix no other test uses; deleted afterwards, so
    a whole run does not leave the broker thousands of partitions to keep in memory."""
    registry = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka_bootstrap, registry)
    yield registry
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(registry.desired()))
    except Exception as exc:  # a test that stopped the broker; its topics die with it
        warnings.warn(f"could not delete the test's topics: {exc!r}", stacklevel=1)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def stripe_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """stripe-mock's base URL (built from the Go module proxy if missing)."""
    from stripe_mock import running_stripe_mock

    with running_stripe_mock(tmp_path_factory.mktemp("stripe-mock") / "stripe-mock.log") as url:
        yield url
