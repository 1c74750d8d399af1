"""What an orchestrator's probes see, on two instances of payment-intake as OS processes:
both ready while only one holds the outbox relay's lock; not ready once the broker is
gone, yet still alive (a restart would not bring the broker back).

The broker is one of this test's own (deploy/runtime/), so stopping it disturbs
no other test.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infra
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics
from system import System, free_port, http_json

pytestmark = pytest.mark.e2e

SERVICE = "payment-intake"


@pytest.fixture
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = infra.load_runtime().KafkaNode().start(tmp_path_factory.mktemp("health-kafka"))
    try:
        yield node
    finally:
        node.stop()


def probe(system: System, key: str, path: str) -> tuple[int, Any]:
    return http_json("GET", system.running[key].url + path, timeout=5.0)


def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


async def test_standby_is_ready_and_a_broker_outage_makes_both_unready_but_alive(
    own_kafka: Any, database_url: str, tmp_path: Path
) -> None:
    registry = TopicRegistry(prefix=f"h{uuid.uuid4().hex[:6]}.")
    await ensure_topics(own_kafka.bootstrap, registry)
    system = System(
        kafka_bootstrap=own_kafka.bootstrap,
        database_url=database_url,
        log_dir=tmp_path / "logs",
        bin_dir=Path(sys.executable).parent,
        topic_prefix=registry.prefix,
        ports={},
        extra_env={"PAYMENTS_SANDBOX": "1"},
    )
    system.ports = {name: free_port() for name in system.ports}
    system.log_dir.mkdir(parents=True)
    instances = [f"{SERVICE}-0", f"{SERVICE}-1"]
    try:
        for replica in (0, 1):
            system.start_replica(SERVICE, replica)
        for key in instances:
            system.wait_ready(key, timeout=60)

        # Ready comes first; the relay's lock is taken once its producer has started.
        def settled() -> dict[str, tuple[int, Any]] | None:
            answers = {key: probe(system, key, "/health/ready") for key in instances}
            roles = sorted(body.get("outbox_relay", "") for _, body in answers.values())
            return answers if roles == ["leader", "standby"] else None

        answers = until(settled, timeout=30, what="one leader and one standby")
        assert {status for status, _ in answers.values()} == {200}, answers
        leader = next(k for k, (_, body) in answers.items() if body["outbox_relay"] == "leader")
        until(
            lambda: (
                "outbox relay: this instance is now the leader"
                in (system.log_dir / f"{leader}.log").read_text()
            ),
            timeout=5,
            what="the leadership log line",
        )
        _, metrics = http_json_text(system.running[leader].url + "/metrics")
        assert f'outbox_relay_leader{{service="{SERVICE}"}} 1.0' in metrics

        own_kafka.stop()
        for key in instances:
            _, body = until(
                lambda key=key: (a := probe(system, key, "/health/ready"))[0] == 503 and a,
                timeout=20,
                what=f"{key} to report the broker outage",
            )
            assert body["checks"]["broker"] is False, body
            assert body["checks"]["database"] is True, body
            assert probe(system, key, "/health/live")[0] == 200
            assert system.running[key].process.poll() is None
    finally:
        for key in list(system.running):
            system.stop_one(key, signal.SIGKILL)  # the broker is gone: no graceful drain to wait for


def http_json_text(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()
