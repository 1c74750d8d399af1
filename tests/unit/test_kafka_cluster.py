"""The local cluster's grants follow the topic registry (deploy/runtime cannot import it)."""

from __future__ import annotations

from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import replication
from runtime.cluster import TOPICS, grants


def test_the_cluster_knows_every_registry_topic() -> None:
    assert set(TOPICS) == {t.name for t in TopicRegistry().all}


def test_each_service_may_read_only_its_inputs() -> None:
    reads = {(a.principal, a.name) for a in grants("p.") if a.operation == "Read" and a.resource == "topic"}
    assert ("User:status-projector", "p.payments.events") in reads
    assert ("User:invoice-sync", "p.payments.events") not in reads
    assert ("User:portal", "p.erp.invoices") not in reads
    assert not any(a.principal == "User:intruder" for a in grants("p."))


def test_three_brokers_keep_three_copies_and_need_two_in_sync() -> None:
    assert replication(3) == (3, 2)
    assert replication(5) == (3, 2)
    assert replication(1) == (1, 1)
    assert replication(3, told=1) == (1, 1)
