"""A KRaft cluster of N nodes from the same Maven jars, as production runs Kafka: three
brokers, replication factor 3, `min.insync.replicas` 2, and optionally a SASL_SSL listener
(SCRAM-SHA-512) with ACLs, one principal per service.

Every node is a combined broker and controller (three voters), each in its own JVM on
its own ports. With `secure=True` each node has three listeners:

- CLIENT (SASL_SSL, SCRAM-SHA-512): what every client of ours uses;
- INTERNAL (SSL, client certificate required): broker to broker, and this runtime's own
  requests (readiness, ACLs), as the brokers' principal, a super user;
- CONTROLLER (SSL, client certificate required): the KRaft quorum.

Certificates (runtime.tls) and the SCRAM passwords are made at start and written under
the cluster's directory only (mode 0600): nothing secret is in the repository or has a
default. The users exist before the first start: each node's storage is formatted with
them (`--add-scram`), so no client ever sees a cluster without them.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .host import LOOPBACK, free_ports, fresh_dir, log, signal_group, wait_for
from .kafka import KafkaNode, _java, ensure_kafka_jars, random_cluster_id
from .tls import BROKER_PRINCIPAL, ClusterCertificates, make_certificates
from .wire import Acl, create_acls, kafka_ready, kafka_socket, partition_states

# The topic registry's topics (payments_contracts.topics; tests/unit/test_kafka_cluster
# keeps the two lists equal): this package runs before any virtualenv, so it cannot import it.
TOPICS = ("erp.invoices", "invoices", "payments.commands", "payments.callbacks", "payments.events")
SERVICES = ("invoice-sync", "payment-intake", "status-projector")
# Who reads and writes what (docs/deploy.md lists the same grants).
READS = {
    "invoice-sync": ("erp.invoices",),
    "payment-intake": ("payments.commands", "payments.callbacks", "invoices"),
    "status-projector": ("invoices", "payments.events"),
    "portal": ("payments.events",),
}
WRITES = {
    "invoice-sync": ("invoices",),
    "payment-intake": ("payments.events", "payments.callbacks"),
    "status-projector": (),
    "portal": ("payments.commands",),
    "erp": ("erp.invoices",),
}
SUPER_USER = "admin"
NO_GRANT = "intruder"  # authenticates, and may do nothing: the negative test's principal
PRINCIPALS = (*SERVICES, "portal", "erp", SUPER_USER, NO_GRANT)
MECHANISM = "SCRAM-SHA-512"

# Failover timing (docs/deploy.md, "Failover timing"): a killed broker is fenced, and its
# partitions led elsewhere, broker.session.timeout.ms after its last heartbeat.
# Measured: with a 2 s quorum fetch timeout and a 3 s session, a killed active controller
# cost 7.4 s at a load average of 25 (2 s to notice, 1 s of split votes, 4 s to fence).
TIMING = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "2500",
    "controller.quorum.election.timeout.ms": "500",
    "controller.quorum.fetch.timeout.ms": "1000",
    "replica.lag.time.max.ms": "10000",
    "unclean.leader.election.enable": "false",
}


def grants(prefix: str = "") -> list[Acl]:
    """The ACLs of every principal for one deployment (topic prefix)."""
    acls: list[Acl] = []
    every_topic = [prefix + t for t in TOPICS] + [prefix + t + ".dlq" for t in TOPICS]
    for service in SERVICES:
        user = f"User:{service}"
        # Each service applies the topic registry at start (payments_platform.topic_admin).
        for topic in every_topic:
            for operation in ("Create", "Describe", "DescribeConfigs", "AlterConfigs", "Alter"):
                acls.append(Acl(user, operation, "topic", topic))
        for topic in READS[service]:
            # Its inputs, their dead letters (written by it; read back by its ops CLI's
            # redrive), and Write on the input too: redrive re-publishes there.
            for operation in ("Read", "Write"):
                acls.append(Acl(user, operation, "topic", prefix + topic))
                acls.append(Acl(user, operation, "topic", prefix + topic + ".dlq"))
        for topic in WRITES[service]:
            acls.append(Acl(user, "Write", "topic", prefix + topic))
        # Its consumer groups (`<service>.<prefix><name>`, payment-intake's
        # `<prefix>payment-intake.<name>`) and its ops CLI's redrive groups (`<service>.redrive.*`).
        for group in sorted({f"{service}.", f"{prefix}{service}."}):
            acls.append(Acl(user, "Read", "group", group, "prefixed"))
        acls.append(Acl(user, "IdempotentWrite", "cluster", "kafka-cluster"))
    acls.append(Acl("User:portal", "Read", "topic", prefix + "payments.events"))
    acls.append(Acl("User:portal", "Write", "topic", prefix + "payments.commands"))
    acls.append(Acl("User:portal", "IdempotentWrite", "cluster", "kafka-cluster"))
    acls.append(Acl("User:erp", "Write", "topic", prefix + "erp.invoices"))
    acls.append(Acl("User:erp", "IdempotentWrite", "cluster", "kafka-cluster"))
    return acls


@dataclass
class KafkaCluster:
    size: int = 3
    secure: bool = False
    topic_prefix: str = ""
    root: Path | None = None
    nodes: list[KafkaNode] = field(default_factory=list)
    internal_ports: list[int] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    ready_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def certificates(self) -> ClusterCertificates | None:
        return ClusterCertificates(self.root / "tls") if self.secure and self.root is not None else None

    # ----------------------------------------------------------------- start

    def start(self, root: Path, *, timeout: float = 120.0, detach: bool = False) -> KafkaCluster:
        started = time.monotonic()
        self.root = fresh_dir(root)
        java, libs = _java(), ensure_kafka_jars()
        if not detach:
            atexit.register(self.stop)
        if self.secure:
            make_certificates(self.root / "tls")
            self.passwords = {user: secrets.token_urlsafe(24) for user in PRINCIPALS}
            credentials = self.root / "credentials.json"
            credentials.write_text(json.dumps(self.passwords, indent=2) + "\n")
            os.chmod(credentials, 0o600)
        ports = free_ports(3 * self.size)
        client, internal, controller = (
            ports[: self.size],
            ports[self.size : 2 * self.size],
            ports[2 * self.size :],
        )
        self.internal_ports = internal if self.secure else []
        voters = ",".join(f"{i + 1}@{LOOPBACK}:{controller[i]}" for i in range(self.size))
        format_args = ("-t", random_cluster_id(), *self._scram_arguments())
        self.nodes = []
        for i in range(self.size):
            node = KafkaNode(
                data_dir=fresh_dir(self.root / f"node-{i + 1}"),
                port=client[i],
                controller_port=controller[i],
                config=self._properties(i, client[i], internal[i], controller[i], voters),
                format_args=format_args,
            )
            node.probe = self._prober(i)
            self.nodes.append(node)
        # Format every node's storage at once: a JVM each, seconds each.
        formats = []
        for node in self.nodes:
            properties = node._write_config()
            formats.append(
                subprocess.Popen(
                    node._format_command(java, libs, properties),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        for process in formats:
            output, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"kafka storage format failed:\n{output.decode()[-4000:]}")
        for node in self.nodes:
            assert node.data_dir is not None
            node._launch(java, libs, node.data_dir / "server.properties")
        try:
            for node in self.nodes:
                node._wait_ready(timeout)
            if self.secure:
                self._grant()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        log(f"Kafka cluster of {self.size} ready in {self.ready_seconds:.1f}s: {self.bootstrap}")
        return self

    def _scram_arguments(self) -> list[str]:
        arguments = []
        for user, password in self.passwords.items():
            arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return arguments

    def _properties(
        self, index: int, client: int, internal: int, controller: int, voters: str
    ) -> dict[str, str]:
        assert self.root is not None
        replicas, min_isr = str(min(3, self.size)), str(2 if self.size >= 3 else 1)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(index + 1),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.root / f"node-{index + 1}" / "data"),
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "log.segment.bytes": "104857600",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
            **TIMING,
        }
        if not self.secure:
            return props | {
                "listeners": f"PLAINTEXT://{LOOPBACK}:{client},CONTROLLER://{LOOPBACK}:{controller}",
                "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{client}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            }
        certs = self.certificates
        assert certs is not None
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return props | {
            "listeners": (
                f"CLIENT://{LOOPBACK}:{client},INTERNAL://{LOOPBACK}:{internal},"
                f"CONTROLLER://{LOOPBACK}:{controller}"
            ),
            "advertised.listeners": f"CLIENT://{LOOPBACK}:{client},INTERNAL://{LOOPBACK}:{internal}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": "CONTROLLER:SSL,INTERNAL:SSL,CLIENT:SASL_SSL",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certs.broker_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certs.ca_file),
            "listener.name.internal.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": MECHANISM,
            "listener.name.client.sasl.enabled.mechanisms": MECHANISM,
            f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"{BROKER_PRINCIPAL};User:{SUPER_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _prober(self, index: int) -> Any:
        def probe() -> bool:
            certs = self.certificates
            if certs is None:
                return kafka_ready(LOOPBACK, self.nodes[index].port or 0)
            return kafka_ready(LOOPBACK, self.internal_ports[index], tls=certs.client_context(as_broker=True))

        return probe

    def _admin_socket(self) -> Any:
        """A connection to a live node as a super user (the brokers' certificate)."""
        for index, node in enumerate(self.nodes):
            if node.is_running():
                certs = self.certificates
                if certs is None:
                    return kafka_socket(LOOPBACK, node.port or 0, 5.0)
                return kafka_socket(
                    LOOPBACK, self.internal_ports[index], 5.0, certs.client_context(as_broker=True)
                )
        raise RuntimeError("no Kafka node is running")

    def _grant(self) -> None:
        with self._admin_socket() as sock:
            create_acls(sock, grants(self.topic_prefix))

    # ----------------------------------------------------------------- clients

    def client_env(self, principal: str = SUPER_USER) -> dict[str, str]:
        """The PAYMENTS_KAFKA_* variables a client of ours connects with, as `principal`."""
        env = {"PAYMENTS_KAFKA_BOOTSTRAP": self.bootstrap}
        certs = self.certificates
        if certs is None:
            return env | {"PAYMENTS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
        return env | {
            "PAYMENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PAYMENTS_KAFKA_SASL_MECHANISM": MECHANISM,
            "PAYMENTS_KAFKA_SASL_USERNAME": principal,
            "PAYMENTS_KAFKA_SASL_PASSWORD": self.passwords[principal],
            "PAYMENTS_KAFKA_SSL_CAFILE": str(certs.ca_file),
        }

    # ----------------------------------------------------------------- faults

    def active_controller(self) -> int:
        """Index of the node leading the KRaft quorum, from the nodes' quorum-state files
        (the newest epoch any live node has seen)."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            assert node.data_dir is not None
            path = node.data_dir / "data" / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            epoch, leader = int(state.get("leaderEpoch", -1)), int(state.get("leaderId", -1))
            if leader > 0 and (best is None or epoch > best[0]):
                best = (epoch, leader)
        if best is None:
            raise RuntimeError("no node knows the quorum's leader")
        return best[1] - 1

    def fully_replicated(self) -> bool:
        """Every partition has every replica in sync (a rolling restart waits for it before
        the next node: restarting one while another catches up would leave one in sync)."""
        try:
            with self._admin_socket() as sock:
                states = partition_states(sock)
        except Exception:
            return False
        return all(len(s.isr) == len(s.replicas) and s.leader >= 0 for s in states)

    def until_fully_replicated(self, timeout: float = 120.0) -> float:
        return wait_for(self.fully_replicated, timeout, "every partition fully replicated", interval=0.2)

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 90.0) -> float:
        return self.nodes[index].restart(timeout)

    def shut_down(self, index: int) -> float:
        return self.nodes[index].shut_down()

    def stop(self) -> None:
        """All nodes at once: the last one of a cluster stopped one by one waits for a quorum
        that is gone (its controlled shutdown cannot finish) until it is killed."""
        for node in self.nodes:
            if node.pid is not None and node.is_running():
                signal_group(node.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout=20)

    # ----------------------------------------------------------------- state

    def to_state(self) -> dict[str, Any]:
        return {
            "managed": True,
            "cluster": True,
            "bootstrap": self.bootstrap,
            "secure": self.secure,
            "topic_prefix": self.topic_prefix,
            "root": str(self.root),
            "internal_ports": self.internal_ports,
            "nodes": [node.to_state() for node in self.nodes],
            "ready_seconds": self.ready_seconds,
            "pid": [node.pid for node in self.nodes],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KafkaCluster:
        cluster = cls(
            size=len(state["nodes"]),
            secure=state["secure"],
            topic_prefix=state.get("topic_prefix", ""),
            root=Path(state["root"]),
            nodes=[KafkaNode.from_state(n) for n in state["nodes"]],
            internal_ports=state.get("internal_ports", []),
            ready_seconds=state.get("ready_seconds"),
        )
        credentials = cluster.root / "credentials.json" if cluster.root else None
        if credentials is not None and credentials.is_file():
            cluster.passwords = json.loads(credentials.read_text())
        for i, node in enumerate(cluster.nodes):
            node.probe = cluster._prober(i)
        return cluster

    def is_running(self) -> bool:
        return all(node.is_running() for node in self.nodes)
