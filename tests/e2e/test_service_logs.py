"""What a user reads in the services' logs: JSON lines, not one error after a clean start,
and the sandbox provider's requests and decisions.

The broker of the clean start is one of this test's own (deploy/runtime/), brand new as
a user's first `make run` finds it: no consumer group has ever asked it for a coordinator.
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
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics
from system import System, free_port, http_json

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
        unclean = system.stop_cleanly()
    assert not unclean, f"services did not stop cleanly on SIGTERM:\n{unclean}"
    for name in system.names:
        errors = [line for line in log_lines(system, name) if line.get("level") in ("error", "critical")]
        assert not errors, f"{name} logged errors on a clean start: {errors}"


def test_the_sandbox_provider_logs_its_requests_and_decisions_as_json_lines(tmp_path: Path) -> None:
    system = System(
        kafka_bootstrap="127.0.0.1:1",  # not used by the sandbox
        database_url="postgresql://nobody@127.0.0.1:1/none",
        log_dir=tmp_path / "logs",
        bin_dir=Path(sys.executable).parent,
        ports={},
        extra_env={"SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.001"},
    )
    system.ports = {name: free_port() for name in system.ports}  # nothing on payment-intake's
    system.log_dir.mkdir(parents=True)
    system.start_one("sandbox-provider")
    try:
        system.wait_ready("sandbox-provider", timeout=60)
        url = system.url("sandbox-provider")
        invoice = {"account_id": "ACC-L", "invoice_number": "INV-L", "amount_minor": 1250, "currency": "USD"}
        assert http_json("POST", f"{url}/v1/invoices", invoice)[0] == 201
        checkout = {**invoice, "payment_id": str(uuid.uuid4()), "method": "card", "invoices": [invoice]}
        status, opened = http_json("POST", f"{url}/v1/checkout-sessions", checkout)
        assert status == 201, opened
        assert http_json("POST", f"{url}/sandbox/checkouts/{opened['checkout_id']}/complete")[0] == 200
        assert http_json("GET", f"{url}/v1/checkouts/cs_unknown")[0] == 404
    finally:
        assert system.stop()["sandbox-provider"] == 0
    lines = log_lines(system, "sandbox-provider")
    requests = {(line.get("method"), line.get("path"), line.get("status")) for line in lines}
    assert ("POST", "/v1/invoices", 201) in requests, lines
    assert ("POST", "/v1/checkout-sessions", 201) in requests, lines
    assert ("GET", "/v1/checkouts/cs_unknown", 404) in requests, lines
    decisions = {line["event"]: line for line in lines}
    assert decisions["checkout opened"]["checkout_id"] == opened["checkout_id"], lines
    assert decisions["checkout completed"]["checkout_id"] == opened["checkout_id"], lines
    # payment-intake is not there: each attempt's failure is told with the webhook's id.
    assert decisions["webhook attempt failed"]["webhook_type"] in ("payment.processing", "payment.succeeded")
    assert {line.get("service") for line in lines} == {"sandbox-provider"}
