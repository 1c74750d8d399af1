"""The walking skeleton on the production topology: three KRaft brokers (replication
factor 3, min.insync.replicas 2), every client over SASL_SSL (SCRAM-SHA-512) as its own
principal, ACLs granting each only its topics and groups. The services, the typed portal
client and the test's ERP producer each connect as themselves; a principal without a
grant gets an authorization error and consumes nothing.

`make test-cluster` runs this file alone; it is part of `make test` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)
from test_walking_skeleton import E2E_MERCHANT, seed_000_invoice

from infra import load_runtime
from kafka_tools import eventually, produce
from payments_contracts.payments import BillingAddress, GuestCheckout
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from payments_portal_client import Accepted, KafkaSecurity, PortalClient
from system import START_ORDER, System, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

PRINCIPAL = {name: name for name in ("invoice-sync", "payment-intake", "status-projector")}


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:6]}."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, prefix: str) -> Iterator[Any]:
    runtime = load_runtime()
    started = runtime.KafkaCluster(size=3, secure=True, topic_prefix=prefix)
    started.start(tmp_path_factory.mktemp("secure-cluster"))
    try:
        yield started
    finally:
        started.stop()


def security(cluster: Any, principal: str) -> KafkaSecurity:
    env = cluster.client_env(principal)
    return KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=env["PAYMENTS_KAFKA_SASL_USERNAME"],
        sasl_password=env["PAYMENTS_KAFKA_SASL_PASSWORD"],
        ssl_cafile=env["PAYMENTS_KAFKA_SSL_CAFILE"],
    )


@pytest.fixture
def secure_system(
    cluster: Any, prefix: str, database_url: str, tmp_path: Path, run_id: str
) -> Iterator[System]:
    merchants = tmp_path / "merchants.json"
    merchants.write_text(json.dumps({"merchants": {E2E_MERCHANT: {"accounts": [f"C-{run_id}"]}}}))
    running = System(
        kafka_bootstrap=cluster.bootstrap,
        database_url=database_url,
        log_dir=tmp_path / "logs",
        bin_dir=Path(sys.executable).parent,
        topic_prefix=prefix,
        ports={},
        extra_env={"PAYMENTS_LOG_LEVEL": "INFO"},
        merchant_config=merchants,
    )
    running.ports = {name: free_port() for name in running.ports}
    running.log_dir.mkdir(parents=True, exist_ok=True)
    for name in START_ORDER:  # each service as its own principal
        running.start_one(name, cluster.client_env(PRINCIPAL[name]) if name in PRINCIPAL else {})
    try:
        for name in START_ORDER:
            running.wait_ready(name, timeout=120)
        yield running
    finally:
        unclean = running.stop_cleanly()
        assert not unclean, f"services did not stop cleanly on SIGTERM:\n{unclean}"


@pytest.fixture
async def portal(cluster: Any, secure_system: System, prefix: str) -> AsyncIterator[PortalClient]:
    async with PortalClient(
        kafka_bootstrap=cluster.bootstrap,
        read_api_url=secure_system.url("status-projector"),
        api_key=demo_api_key(E2E_MERCHANT),
        topic_prefix=prefix,
        kafka_security=security(cluster, "portal"),
    ) as client:
        yield client


async def test_walking_skeleton_over_sasl_ssl_with_acls_on_three_brokers(
    cluster: Any, secure_system: System, portal: PortalClient, prefix: str, run_id: str
) -> None:
    topics = TopicRegistry(prefix)
    account, number = f"C-{run_id}", f"INV-{run_id}"

    # The topics the services applied at start: three copies, two in sync for a write.
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, **security(cluster, "admin").options())
    await admin.start()
    try:
        described = await admin.describe_topics([t.name for t in topics.all] + [topics.invoices.dead_letter])
        assert all(len(p["replicas"]) == 3 for d in described for p in d["partitions"]), described
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.payments_events.name)]
        )
        min_isr = {c[0]: c[1] for c in configs[0].resources[0][4]}["min.insync.replicas"]
        assert min_isr == "2"
    finally:
        await admin.close()

    # ERP -> invoice-sync -> provider -> read model, each as its own principal.
    erp = security(cluster, "erp").options()
    await produce(cluster.bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)], **erp)
    payable = await eventually(
        lambda: _status(portal, account, number), lambda s: s == "payable", timeout=60, what="payable"
    )
    assert payable == "payable"

    # The portal client pays over SASL_SSL and hears the outcome on payments.events.
    outcome = await portal.pay_invoice(account, number, _guest(), timeout_s=60)
    assert isinstance(outcome, Accepted), outcome
    async with httpx.AsyncClient(base_url=secure_system.url("sandbox-provider")) as provider:
        listed = (await provider.get("/sandbox/checkouts")).json()
        checkout = next(c["checkout_id"] for c in listed if c["payment_id"] == str(outcome.payment_id))
        done = await provider.post(f"/sandbox/checkouts/{checkout}/complete")
        assert done.status_code == 200, done.text
    await eventually(lambda: _status(portal, account, number), lambda s: s == "paid", timeout=60, what="paid")


async def test_a_principal_without_a_grant_is_refused_and_consumes_nothing(
    cluster: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    topics = TopicRegistry(prefix)
    intruder = security(cluster, "intruder").options()
    admin_options = security(cluster, "admin").options()
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, **admin_options)
    await admin.start()
    try:  # the services create it when the walking skeleton ran first
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(topics.payments_events.name, 6, 3, topic_configs={"min.insync.replicas": "2"})]
            )
    finally:
        await admin.close()
    await produce(cluster.bootstrap, topics.payments_events.name, [(b"C-1", b"{}")], **admin_options)

    # In a consumer group: refused at once (the topic, or the group, whichever is asked first).
    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await _consume_in_a_group(cluster.bootstrap, topics.payments_events.name, intruder)

    # Without a group (as the portal client reads): the broker refuses the topic and the
    # consumer gets nothing, though a record is there.
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False, **intruder)
    await consumer.start()
    received: list[Any] = []
    try:
        partition = TopicPartition(topics.payments_events.name, 0)
        consumer.assign([partition])
        for _ in range(12):
            batch = await consumer.getmany(timeout_ms=250)
            received += [r for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    assert received == []
    assert any("is not authorized" in r.getMessage() for r in caplog.records), "no authorization error"

    # Writing: the portal's principal may send commands, not ERP documents.
    portal = security(cluster, "portal").options()
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10_000, **portal)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait(topics.erp_invoices.name, b"{}", key=b"C-1"), 30)
    finally:
        await producer.stop()


async def _consume_in_a_group(bootstrap: str, topic: str, options: dict[str, Any]) -> list[Any]:
    grouped = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="intruders", **options)
    try:
        await grouped.start()
        batch = await grouped.getmany(timeout_ms=10_000)
        return [r for records in batch.values() for r in records]
    finally:
        await grouped.stop()


async def _status(portal: PortalClient, account: str, number: str) -> str | None:
    try:
        return (await portal.read.invoice(account, number)).pay_status.value
    except Exception:
        return None


def _guest() -> GuestCheckout:
    return GuestCheckout(
        billing_address=BillingAddress(
            email="ap@example.com",
            street="1 Main Street",
            country="US",
            postal_code="02139",
            phone_country_code="+1",
            phone_number="6175550100",
        ),
        name_on_card="Pat Buyer",
    )
