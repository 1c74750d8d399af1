"""Local infrastructure runtime: a real Kafka 3.9.1 broker and a real PostgreSQL.

Standard library only, on purpose: ``python3 deploy/runtime up`` runs before any
virtualenv exists, and the pytest helpers in ``tests/infra.py`` use it when no
Docker engine is available. Both servers bind to 127.0.0.1 only.

- ``host``: ports, processes, directories and tools both servers need;
- ``wire``: readiness by each server's own protocol, polled inside a deadline;
- ``kafka``: the Kafka jars and ``KafkaNode``;
- ``cluster``: ``KafkaCluster``, N KRaft nodes, optionally SASL_SSL with ACLs (``tls``: its certificates);
- ``postgres``: the PostgreSQL binaries and ``PostgresNode``;
- ``cli``: ``up``, ``env`` and ``down`` over a state directory.
"""

from .cli import main
from .cluster import KafkaCluster
from .host import cache_root, free_port, free_ports, port_holder, port_is_free, require_tool, wait_for
from .kafka import KafkaNode, parse_properties, random_cluster_id, render_kafka_properties
from .postgres import PostgresNode, failover_dsn
from .wire import kafka_ready

__all__ = [
    "KafkaCluster",
    "KafkaNode",
    "PostgresNode",
    "cache_root",
    "failover_dsn",
    "free_port",
    "free_ports",
    "kafka_ready",
    "main",
    "parse_properties",
    "port_holder",
    "port_is_free",
    "random_cluster_id",
    "render_kafka_properties",
    "require_tool",
    "wait_for",
]
