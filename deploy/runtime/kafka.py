"""A single-node KRaft Kafka in one local JVM, from the official jars on Maven Central.

The jars are fetched once with Maven into a cache outside the repository and run on
the machine's Java; the broker binds to 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from .host import (
    LOOPBACK,
    cache_root,
    file_lock,
    free_ports,
    fresh_dir,
    log,
    pid_alive,
    remove_tree,
    require_free,
    require_tool,
    retry_port_clash,
    signal_group,
    startup_error,
    terminate,
    wait_for,
    wait_gone,
)
from .wire import kafka_ready

KAFKA_VERSION = "3.9.1"
DEPLOY_DIR = Path(__file__).resolve().parents[1]
KAFKA_POM = DEPLOY_DIR / "kafka" / "pom.xml"
KAFKA_TEMPLATE = DEPLOY_DIR / "kafka" / "server.properties.template"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_KAFKA_HEAP = "-Xms256m -Xmx1g"  # thousands of test partitions outgrow 512m

KAFKA_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""


def kafka_home() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    """The marker records which pom filled the cache, so editing the pom refreshes it."""
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def _jars_complete(libs: Path, marker: Path) -> bool:
    return (
        marker.is_file()
        and marker.read_text().strip() == _pom_digest()
        and (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
        and any(libs.glob("slf4j-reload4j-*.jar"))
    )


def _download_jars(target: Path) -> None:
    mvn = require_tool("mvn", "maven")
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
    ]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"maven could not fetch the Kafka jars:\n{result.stdout[-4000:]}")


def ensure_kafka_jars() -> Path:
    """Return the directory holding Kafka's jars, fetching them with Maven only once."""
    home = kafka_home()
    libs, marker = home / "libs", home / ".complete"
    if _jars_complete(libs, marker):
        return libs
    with file_lock(home.with_name(home.name + ".lock")):
        if _jars_complete(libs, marker):
            return libs
        log(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central into {libs} (first run only)")
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home.parent))
        try:
            _download_jars(staging)
            remove_tree(libs)
            home.mkdir(parents=True, exist_ok=True)
            staging.rename(libs)
        finally:
            remove_tree(staging)
        marker.write_text(_pom_digest() + "\n")
        jar_count = len(list(libs.glob("*.jar")))
        log(f"Kafka jars ready in {time.monotonic() - started:.1f}s ({jar_count} jars)")
    return libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return require_tool("java", "openjdk-17-jre-headless")


def random_cluster_id() -> str:
    """Kafka's Uuid format: 16 random bytes, URL-safe base64, no padding, no leading '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_kafka_properties(port: int, controller_port: int, log_dir: Path | str) -> str:
    """One template serves the local JVM and (via env vars) the apache/kafka container."""
    template = Template(KAFKA_TEMPLATE.read_text())
    return template.substitute(port=port, controller_port=controller_port, log_dir=log_dir)


def parse_properties(text: str) -> dict[str, str]:
    """Enough of the java.util.Properties format for our own template (no continuations)."""
    pairs = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


@dataclass
class KafkaNode:
    """A single-node KRaft Kafka (broker + controller) in one local JVM."""

    data_dir: Path | None = None
    port: int | None = None
    controller_port: int | None = None
    pid: int | None = None
    ready_seconds: float | None = None
    start_seconds: float | None = None
    # A cluster member (runtime.cluster) brings its whole configuration, the arguments
    # its storage is formatted with (cluster id, SCRAM users) and its readiness probe.
    config: dict[str, str] | None = None
    format_args: tuple[str, ...] = ()
    probe: Callable[[], bool] | None = field(default=None, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("Kafka is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "kafka.log"

    def start(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        timeout: float = 90.0,
        detach: bool = False,
    ) -> KafkaNode:
        """Format fresh storage, launch the broker and block until it serves requests.

        `detach=True` lets the broker outlive this Python process (the CLI); otherwise
        it is stopped at interpreter exit so a crashed test run leaves nothing behind.
        """
        started = time.monotonic()
        require_free(port)
        java, libs = _java(), ensure_kafka_jars()
        if not detach:
            atexit.register(self.stop)
        retry_port_clash(lambda: self._start_once(java, libs, data_dir, port, timeout), "Kafka")
        self.start_seconds = time.monotonic() - started
        return self

    def _start_once(self, java: str, libs: Path, data_dir: Path, port: int | None, timeout: float) -> None:
        self.data_dir = fresh_dir(data_dir)
        picked_port, self.controller_port = free_ports(2)
        self.port = port or picked_port
        properties = self._write_config()
        self._format(java, libs, properties)
        self._launch(java, libs, properties)
        self._wait_ready(timeout)

    def _write_config(self) -> Path:
        assert self.data_dir is not None
        assert self.port is not None
        assert self.controller_port is not None
        if self.config is not None:
            rendered = "".join(f"{key}={value}\n" for key, value in self.config.items())
        else:
            rendered = render_kafka_properties(self.port, self.controller_port, self.data_dir / "data")
        properties = self.data_dir / "server.properties"
        properties.write_text(rendered)
        (self.data_dir / "log4j.properties").write_text(KAFKA_LOG4J)
        return properties

    def _jvm_args(self, libs: Path, heap: str) -> list[str]:
        assert self.data_dir is not None
        return [
            *shlex.split(heap),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{libs}/*",
        ]

    def _format_command(self, java: str, libs: Path, properties: Path) -> list[str]:
        """KRaft will not start on unformatted storage; static voters need no --standalone."""
        return [
            java,
            *self._jvm_args(libs, "-Xmx256m"),
            "kafka.tools.StorageTool",
            "format",
            *(self.format_args or ("-t", random_cluster_id())),
            "-c",
            str(properties),
        ]

    def _format(self, java: str, libs: Path, properties: Path) -> None:
        command = self._format_command(java, libs, properties)
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{result.stdout[-4000:]}")

    def _launch(self, java: str, libs: Path, properties: Path) -> None:
        heap = os.environ.get("PAYMENTS_KAFKA_HEAP_OPTS", DEFAULT_KAFKA_HEAP)
        command = [java, *self._jvm_args(libs, heap), "kafka.Kafka", str(properties)]
        with open(self.log_file, "ab") as log_handle:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.data_dir,
            )
        self.pid = self._process.pid

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"Kafka exited with code {self._process.returncode} during startup")

    def _probe(self) -> bool:
        self._check_alive()
        assert self.port is not None
        return self.probe() if self.probe is not None else kafka_ready(LOOPBACK, self.port)

    def _wait_ready(self, timeout: float) -> None:
        try:
            self.ready_seconds = wait_for(self._probe, timeout, f"Kafka on {self.bootstrap}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise startup_error(exc, self.log_file) from None

    def is_running(self) -> bool:
        return pid_alive(self.pid, "kafka.Kafka")

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests); its data directory stays."""
        if self.pid is not None and self.is_running():
            signal_group(self.pid, signal.SIGKILL)
            wait_gone(self.pid, 10)
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._process, self.pid = None, None

    def restart(self, timeout: float = 90.0) -> float:
        """Start the broker again on its existing data and ports; seconds until it serves."""
        assert self.data_dir is not None
        started = time.monotonic()
        self._launch(_java(), ensure_kafka_jars(), self.data_dir / "server.properties")
        self._wait_ready(timeout)
        return time.monotonic() - started

    def shut_down(self, timeout: float = 60.0) -> float:
        """SIGTERM: a controlled shutdown (leadership handed over first), as a rolling
        restart does it; its data directory stays. Seconds until the process is gone."""
        started = time.monotonic()
        if self.pid is not None and self.is_running():
            terminate(self.pid, timeout)
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._process, self.pid = None, None
        return time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
        """Idempotent: safe from atexit, fixtures and `down` alike."""
        if self.pid is not None and self.is_running():
            terminate(self.pid, timeout)
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._process = None
        self.pid = None

    def to_state(self) -> dict[str, Any]:
        return {
            "managed": True,
            "bootstrap": self.bootstrap,
            "pid": self.pid,
            "port": self.port,
            "controller_port": self.controller_port,
            "data_dir": str(self.data_dir),
            "log": str(self.log_file),
            "ready_seconds": self.ready_seconds,
            "start_seconds": self.start_seconds,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KafkaNode:
        return cls(
            data_dir=Path(state["data_dir"]),
            port=state["port"],
            controller_port=state.get("controller_port"),
            pid=state["pid"],
            ready_seconds=state.get("ready_seconds"),
            start_seconds=state.get("start_seconds"),
        )
