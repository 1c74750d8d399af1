"""What a user reads in the logs after a clean start: every service of a system started on
a broker fresh from `make up` writes JSON lines and not one error.

The broker is one of this test's own (deploy/runtime/), brand new as a user's first
`make run` finds it: no consumer group has ever asked it for a coordinator.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infra
from payments_shared.topics import TopicRegistry, ensure_topics
from system import System, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = infra.load_runtime().KafkaNode().start(tmp_path_factory.mktemp("fresh-kafka"))
    try:
        yield node
    finally:
        node.stop()


def log_lines(system: System, name: str) -> list[dict[str, Any]]:
    text = (system.log_dir / f"{name}.log").read_text()
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            raise AssertionError(f"{name} wrote a line that is not JSON: {raw!r}") from None
    return lines


async def test_a_clean_start_on_a_fresh_broker_logs_no_error(
    fresh_kafka: Any, database_url: str, tmp_path: Path
) -> None:
    registry = TopicRegistry(prefix=f"c{uuid.uuid4().hex[:6]}.")
    await ensure_topics(fresh_kafka.bootstrap, registry)
    system = System(
        kafka_bootstrap=fresh_kafka.bootstrap,
        database_url=database_url,
        log_dir=tmp_path / "logs",
        bin_dir=Path(sys.executable).parent,
        topic_prefix=registry.prefix,
        ports={},
    )
    system.ports = {name: free_port() for name in system.ports}
    try:
        system.start(timeout=120)
    finally:
        codes = system.stop()
    assert set(codes.values()) == {0}, codes
    for name in system.names:
        errors = [line for line in log_lines(system, name) if line.get("level") in ("error", "critical")]
        assert not errors, f"{name} logged errors on a clean start: {errors}"
