"""The whole system as OS processes on real Kafka and PostgreSQL."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from payments_contracts.topics import TopicRegistry
from system import System, free_port

E2E_MERCHANT = "e2e-merchant"
StartSystem = Callable[..., System]


@pytest.fixture
def system_env() -> dict[str, str]:
    """Extra environment for the services; a test module overrides it to tune them.
    By default the sandbox's webhook retry schedule (5 s, 5 min, 30 min, ...) is compressed
    and status sync runs after seconds, so a webhook lost while a service restarts does
    not outlast a test."""
    return {"SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01", "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": "5"}


@pytest.fixture
def system_with(
    kafka_bootstrap: str,
    database_url: str,
    topics: TopicRegistry,
    tmp_path: Path,
    system_env: dict[str, str],
) -> Iterator[StartSystem]:
    """Starts the whole system with the merchant file given; at the end every program must
    stop cleanly on SIGTERM."""
    started: list[System] = []

    def start(
        merchant_file: dict[str, Any], *, database: str | None = None, env: dict[str, str] | None = None
    ) -> System:
        """`database`: a PostgreSQL of the test's own (set up before this fixture, so it is
        stopped after the programs); `env`: more settings."""
        merchants = tmp_path / "merchants.json"
        merchants.write_text(json.dumps(merchant_file))
        running = System(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database or database_url,
            log_dir=tmp_path / "logs",
            bin_dir=Path(sys.executable).parent,
            topic_prefix=topics.prefix,
            ports={},
            extra_env={"PAYMENTS_LOG_LEVEL": "INFO", **system_env, **(env or {})},
            merchant_config=merchants,
        )
        # Free ports, never the defaults: a developer's `make run` may be holding them.
        running.ports = {name: free_port() for name in running.ports}
        started.append(running)
        running.start()
        return running

    yield start
    for running in started:
        unclean = running.stop_cleanly()
        assert not unclean, f"services did not stop cleanly on SIGTERM:\n{unclean}"


@pytest.fixture
def system(system_with: StartSystem, run_id: str) -> System:
    # The merchant file says whose accounts the run's are (its demo key reads them).
    return system_with({"merchants": {E2E_MERCHANT: {"accounts": [f"C-{run_id}"]}}})


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:6].upper()
