"""Where the tests get a real Kafka broker and a real PostgreSQL from.

Order of preference, per server:
1. an endpoint from the environment (``PAYMENTS_KAFKA_BOOTSTRAP`` /
   ``PAYMENTS_DATABASE_URL``), e.g. after ``. .run/env`` or in a CI that provides
   services: nothing is started and nothing is stopped;
2. testcontainers, when a Docker engine answers;
3. the local runtime in ``deploy/runtime/`` (Kafka jars on the machine's Java,
   PostgreSQL from the machine's binaries).

Each helper returns ``(endpoint, stop)``; ``stop`` is idempotent. The conftest
decides the fixture scope; these functions only know how to obtain a server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

KAFKA_ENV = "PAYMENTS_KAFKA_BOOTSTRAP"
DATABASE_ENV = "PAYMENTS_DATABASE_URL"
KAFKA_IMAGE = "apache/kafka:3.9.1"
POSTGRES_IMAGE = "postgres:15"
CONTAINER_READY_TIMEOUT = 120.0

Endpoint = tuple[str, Callable[[], None]]


def _noop() -> None:
    return None


def load_runtime() -> ModuleType:
    """The local runtime package (deploy/ is on pytest's pythonpath)."""
    import runtime

    return runtime


def docker_available() -> bool:
    """A docker CLI without a daemon is common (CI, sandboxes): only a ping proves an engine."""
    try:
        import docker

        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _scratch_dir(tmp_root: Path, prefix: str) -> Path:
    tmp_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_root))


# --------------------------------------------------------------------------- Kafka


def kafka_endpoint(tmp_root: Path) -> Endpoint:
    """Return ``(bootstrap_servers, stop)`` for a real single-node Kafka 3.9.1."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        return external, _noop
    if docker_available():
        return _kafka_container()
    return _kafka_local(tmp_root)


def _kafka_local(tmp_root: Path) -> Endpoint:
    runtime = load_runtime()
    data_dir = _scratch_dir(tmp_root, "kafka-")
    node = runtime.KafkaNode().start(data_dir)

    def stop() -> None:
        node.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    return node.bootstrap, stop


def _container_env(properties: dict[str, str]) -> dict[str, str]:
    """apache/kafka maps KAFKA_FOO_BAR to foo.bar ('_' -> '___', '-' -> '__', '.' -> '_')."""

    def env_name(key: str) -> str:
        return "KAFKA_" + key.replace("_", "___").replace("-", "__").replace(".", "_").upper()

    return {env_name(key): value for key, value in properties.items()}


def _kafka_container() -> Endpoint:
    """apache/kafka:3.9.1 configured from the same template as the local broker.

    testcontainers' KafkaContainer drives Confluent's cp-kafka entrypoint scripts and
    does not work with the apache/kafka image, so a plain DockerContainer is used.
    The container listens on the same port number as the host side, so the advertised
    address is right without knowing the mapping in advance.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    runtime = load_runtime()
    host, port = DockerClient().host(), runtime.free_port()
    properties = runtime.parse_properties(runtime.render_kafka_properties(port, 9093, "/var/lib/kafka/data"))
    properties["listeners"] = f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://127.0.0.1:9093"
    properties["advertised.listeners"] = f"PLAINTEXT://{host}:{port}"
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(port, port)
    for name, value in _container_env(properties).items():
        container.with_env(name, value)
    container.with_env("CLUSTER_ID", runtime.random_cluster_id())
    container.start()
    try:
        runtime.wait_for(
            lambda: runtime.kafka_ready(host, port),
            CONTAINER_READY_TIMEOUT,
            f"Kafka container on {host}:{port}",
            interval=0.2,
        )
    except BaseException:
        container.stop()
        raise
    return f"{host}:{port}", _once(container.stop)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_endpoint(tmp_root: Path) -> Endpoint:
    """Return ``(dsn, stop)`` for a real PostgreSQL with an empty ``payments`` database."""
    external = os.environ.get(DATABASE_ENV)
    if external:
        return external, _noop
    if docker_available():
        return _postgres_container()
    return _postgres_local(tmp_root)


def _postgres_local(tmp_root: Path) -> Endpoint:
    runtime = load_runtime()
    data_dir = _scratch_dir(tmp_root, "pg-")
    node = runtime.PostgresNode().start(data_dir, durable=False)

    def stop() -> None:
        node.stop()
        node.remove_data()

    return node.dsn, stop


def _postgres_container() -> Endpoint:
    try:  # testcontainers >= 4.14 moved modules; the old path warns (and -W error fails)
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password="postgres", dbname="payments", driver=None
    )
    container.with_command(
        "postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    container.start()
    return container.get_connection_url(), _once(container.stop)


def _once(action: Callable[[], object]) -> Callable[[], None]:
    """Teardown may run from a fixture and again from a failure path; the second is a no-op."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
