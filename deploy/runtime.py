#!/usr/bin/env python3
"""Local infrastructure runtime: a real Kafka 3.9.1 broker and a real PostgreSQL.

Standard library only, on purpose: ``python3 deploy/runtime.py up`` runs before any
virtualenv exists, and the pytest helpers in ``tests/infra.py`` import this module
when no Docker engine is available.

Kafka runs from the official jars on Maven Central (fetched once with Maven into a
cache) on the machine's Java; PostgreSQL runs from the machine's binaries (installed
with apt-get when missing and we are root). Both bind to 127.0.0.1 only.

Readiness is decided by talking each server's own wire protocol (Kafka ApiVersions +
Metadata, PostgreSQL startup handshake), polled inside a deadline, never by sleeping
for a fixed time.

CLI::

    python3 deploy/runtime.py up   [--state-dir .run]   # start both, detached
    python3 deploy/runtime.py env  [--state-dir .run]   # print the env file
    python3 deploy/runtime.py down [--state-dir .run]   # stop them, delete data
"""

from __future__ import annotations

import argparse
import atexit
import base64
import errno
import fcntl
import glob
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, TypeVar

KAFKA_VERSION = "3.9.1"
DEPLOY_DIR = Path(__file__).resolve().parent
KAFKA_POM = DEPLOY_DIR / "kafka" / "pom.xml"
KAFKA_TEMPLATE = DEPLOY_DIR / "kafka" / "server.properties.template"
KAFKA_ENV = "PAYMENTS_KAFKA_BOOTSTRAP"
DATABASE_ENV = "PAYMENTS_DATABASE_URL"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_POSTGRES_PORT = 5432
DEFAULT_KAFKA_HEAP = "-Xms256m -Xmx512m"
PG_SUPERUSER = "postgres"
PG_DATABASE = "payments"
LOOPBACK = "127.0.0.1"
T = TypeVar("T")
# sun_path is 108 bytes on Linux; PostgreSQL appends "/.s.PGSQL.<port>".
MAX_SOCKET_DIR_LEN = 90

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


# --------------------------------------------------------------------------- utils


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays parseable (e.g. `env`)."""
    print(f"[runtime] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Jars are big and immutable: keep them outside the repo and reuse across runs."""
    configured = os.environ.get("PAYMENTS_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "payments-infra"


def is_root() -> bool:
    return os.geteuid() == 0


def port_is_free(port: int) -> bool:
    """SO_REUSEADDR mirrors what Kafka and PostgreSQL do, so TIME_WAIT does not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Let the kernel choose distinct ports; a clash before the server binds is retried."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def require_free(port: int | None) -> None:
    """A caller-chosen port that is taken is a usage error, not something to retry."""
    if port is not None and not port_is_free(port):
        raise RuntimeError(f"port {port} on {LOOPBACK} is already in use")


def preferred_port(port: int) -> int:
    """Well-known ports make the CLI endpoints memorable; fall back when taken."""
    return port if port_is_free(port) else free_port()


def pid_alive(pid: int | None, cmdline_needle: str | None = None) -> bool:
    """Zombies count as dead, and the needle guards against a recycled pid."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    if cmdline_needle is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return cmdline_needle in cmdline


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `predicate` until true; return the elapsed seconds or raise TimeoutError."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(interval)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Servers run in their own session, so the group id equals the leader's pid."""
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        wait_for(lambda: not pid_alive(pid), timeout, f"exit of pid {pid}")
    except TimeoutError:
        return False
    return True


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM lets the server shut down cleanly; SIGKILL bounds how long we wait."""
    signal_group(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        log(f"pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
        signal_group(pid, signal.SIGKILL)
        wait_gone(pid, 10)


class PortClashError(RuntimeError):
    """Another process bound a port we had picked before our server could."""


PORT_ATTEMPTS = 3
TAIL_LINES = 30


def startup_error(exc: Exception, log_file: Path) -> RuntimeError:
    """Show the server's own words (first error + tail) and make port races recognisable."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        lines = [f"(no log at {log_file})"]
    first_error = next((line for line in lines if " ERROR " in line or "FATAL:" in line), None)
    clash = any("Address already in use" in line for line in lines)
    error_type = PortClashError if clash else RuntimeError
    context = f"first error: {first_error}\n" if first_error else ""
    tail = "\n".join(lines[-TAIL_LINES:])
    return error_type(f"{exc}\n{context}last lines of {log_file}:\n{tail}")


def retry_port_clash(start_once: Callable[[], T], what: str) -> T:
    """Free ports are picked before the server binds them; parallel test workers can win."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return start_once()
        except PortClashError:
            if attempt == PORT_ATTEMPTS:
                raise
            log(f"{what}: a picked port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def remove_tree(path: Path | None) -> None:
    if path is None:
        return
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def fresh_dir(path: Path) -> Path:
    """Every run starts from empty storage so no state leaks between runs."""
    path = path.expanduser().resolve()
    remove_tree(path)
    path.mkdir(parents=True)
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Parallel pytest workers may all try to fill the cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apt_install(package: str) -> None:
    """Fresh CI machines may lack a server package; root can install it from Debian."""
    if not is_root() or shutil.which("apt-get") is None:
        raise RuntimeError(f"{package} is missing and cannot be installed here (needs root and apt-get)")
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, env=env, stdout=sys.stderr)


def require_tool(name: str, apt_package: str) -> str:
    found = shutil.which(name)
    if found is None:
        apt_install(apt_package)
        found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{name}` not found on PATH (Debian package: {apt_package})")
    return found


# --------------------------------------------------------------------------- Kafka jars


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


# --------------------------------------------------------------------------- Kafka wire protocol


class WireProtocolError(RuntimeError):
    pass


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise WireProtocolError("connection closed mid-response")
        chunks.extend(chunk)
    return bytes(chunks)


def _kafka_call(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """One request/response with a v1 request header (non-flexible versions only)."""
    client_id = b"payments-runtime"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got_id,) = struct.unpack_from(">i", response)
    if got_id != correlation_id:
        raise WireProtocolError(f"correlation id {got_id} != {correlation_id}")
    return response[4:]


def _api_versions_ok(sock: socket.socket) -> bool:
    """ApiVersions v0 (key 18): the broker's request handlers are up and answering."""
    body = _kafka_call(sock, 18, 0, 1, b"")
    error_code: int = struct.unpack_from(">h", body)[0]
    return error_code == 0


def _metadata_broker_ports(sock: socket.socket) -> list[int]:
    """Metadata v1 (key 3) for no topics: lists only *unfenced* brokers in KRaft mode."""
    body = _kafka_call(sock, 3, 1, 2, struct.pack(">i", 0))
    (count,), offset = struct.unpack_from(">i", body), 4
    ports = []
    for _ in range(count):
        _node_id, host_len = struct.unpack_from(">ih", body, offset)
        offset += 6 + host_len
        (port, rack_len) = struct.unpack_from(">ih", body, offset)
        offset += 6 + max(rack_len, 0)
        ports.append(port)
    return ports


def kafka_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True once the broker answers the protocol and has registered itself unfenced.

    ApiVersions alone can succeed while the broker is still fenced, when creating a
    topic would fail with "no brokers available"; the Metadata check closes that gap.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return _api_versions_ok(sock) and port in _metadata_broker_ports(sock)
    except (OSError, WireProtocolError, struct.error):
        return False


# --------------------------------------------------------------------------- Kafka node


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

    def _format(self, java: str, libs: Path, properties: Path) -> None:
        """KRaft will not start on unformatted storage; static voters need no --standalone."""
        command = [
            java,
            *self._jvm_args(libs, "-Xmx256m"),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            random_cluster_id(),
            "-c",
            str(properties),
        ]
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
        return kafka_ready(LOOPBACK, self.port)

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


# --------------------------------------------------------------------------- PostgreSQL binaries


def _has_server(bin_dir: Path) -> bool:
    return all((bin_dir / tool).is_file() for tool in ("initdb", "postgres", "pg_ctl"))


def _find_pg_bindir() -> Path | None:
    """pg_config may belong to libpq-dev without a server, so check initdb is really there."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], stdout=subprocess.PIPE, text=True, check=False)
        candidate = Path(result.stdout.strip())
        if result.returncode == 0 and _has_server(candidate):
            return candidate

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return -1.0

    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_server(Path(path)):
            return Path(path)
    return None


def ensure_postgres_binaries() -> Path:
    """Return PostgreSQL's server bin dir, installing Debian's package when root."""
    found = _find_pg_bindir()
    if found is None:
        if not is_root():
            raise RuntimeError(
                "PostgreSQL server binaries not found (no initdb via pg_config or in "
                "/usr/lib/postgresql/*/bin). Install them (Debian: apt-get install postgresql) "
                f"or set {DATABASE_ENV} to an existing database."
            )
        apt_install("postgresql")
        found = _find_pg_bindir()
    if found is None:
        raise RuntimeError("PostgreSQL installed but no initdb found under /usr/lib/postgresql/*/bin")
    return found


# ------------------------------------------------------------------------ PostgreSQL wire protocol


def _pg_message(sock: socket.socket) -> tuple[bytes, bytes]:
    kind = _recv_exact(sock, 1)
    (length,) = struct.unpack(">i", _recv_exact(sock, 4))
    return kind, _recv_exact(sock, length - 4)


def _pg_error_text(payload: bytes) -> str:
    fields = {part[:1]: part[1:].decode(errors="replace") for part in payload.split(b"\0") if part}
    return fields.get(b"M", "unknown error")


def _pg_until_ready(sock: socket.socket) -> None:
    """Read until ReadyForQuery; an ErrorResponse (e.g. 'starting up') becomes an exception."""
    while True:
        kind, payload = _pg_message(sock)
        if kind == b"E":
            raise ConnectionError(_pg_error_text(payload))
        if kind == b"R" and struct.unpack_from(">i", payload)[0] != 0:
            raise ConnectionError("server asked for a password; trust auth is expected")
        if kind == b"Z":
            return


def pg_session(host: str, port: int, user: str, database: str, timeout: float = 2.0) -> socket.socket:
    """Open a real, authenticated protocol-3.0 session (trust auth, no TLS)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        params = b"".join(
            k + b"\0" + v.encode() + b"\0" for k, v in ((b"user", user), (b"database", database))
        )
        body = struct.pack(">i", 196608) + params + b"\0"
        sock.sendall(struct.pack(">i", len(body) + 4) + body)
        _pg_until_ready(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def pg_execute(sock: socket.socket, sql: str) -> None:
    query = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack(">i", len(query) + 4) + query)
    _pg_until_ready(sock)


def pg_close(sock: socket.socket) -> None:
    try:
        sock.sendall(b"X" + struct.pack(">i", 4))
    finally:
        sock.close()


def postgres_ready(host: str, port: int) -> bool:
    """True once a client can log in and run a query, not merely once the port is open."""
    try:
        sock = pg_session(host, port, PG_SUPERUSER, "postgres")
        try:
            pg_execute(sock, "SELECT 1")
        finally:
            pg_close(sock)
    except (OSError, struct.error, WireProtocolError):
        return False
    return True


# --------------------------------------------------------------------------- PostgreSQL node


def ensure_os_user(name: str) -> None:
    """PostgreSQL refuses to run as root, so root needs an unprivileged account for it."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        log(f"creating OS user {name!r} to run PostgreSQL")
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )


def _as_user(run_as: str | None) -> dict[str, Any]:
    """Popen kwargs that drop root (uid, gid and supplementary groups) for child processes."""
    if run_as is None:
        return {}
    entry = pwd.getpwnam(run_as)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _user_can_write(path: Path, run_as: str | None) -> bool:
    if run_as is None:
        return os.access(path, os.W_OK | os.X_OK)
    result = subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)], **_as_user(run_as))
    return result.returncode == 0


def _chown(path: Path, run_as: str | None) -> None:
    if run_as is None:
        return
    entry = pwd.getpwnam(run_as)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class PostgresNode:
    """A throwaway PostgreSQL cluster owned by this runtime, listening on 127.0.0.1."""

    data_dir: Path | None = None
    pgdata: Path | None = None
    port: int | None = None
    pid: int | None = None
    bin_dir: Path | None = None
    run_as: str | None = None
    durable: bool = True
    relocated: bool = False
    ready_seconds: float | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        if self.port is None:
            raise RuntimeError("PostgreSQL is not started")
        return f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{self.port}/{PG_DATABASE}"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "postgres.log"

    def start(
        self,
        data_dir: Path,
        port: int | None = None,
        durable: bool = True,
        *,
        timeout: float = 60.0,
        detach: bool = False,
    ) -> PostgresNode:
        """initdb a fresh cluster, start it and create the `payments` database.

        `durable=False` trades crash safety for speed: right for tests, whose data
        is thrown away anyway. `detach` has the same meaning as for KafkaNode.
        """
        require_free(port)
        self.bin_dir = ensure_postgres_binaries()
        self.run_as = PG_SUPERUSER if is_root() else None
        if self.run_as:
            ensure_os_user(self.run_as)
        self.durable = durable
        if not detach:
            atexit.register(self.stop)
        retry_port_clash(lambda: self._start_once(data_dir, port, timeout), "PostgreSQL")
        self._create_database()
        return self

    def _start_once(self, data_dir: Path, port: int | None, timeout: float) -> None:
        self.remove_data()
        self.data_dir = fresh_dir(data_dir)
        self.port = port or free_port()
        self.pgdata = self._place_cluster()
        self._initdb()
        self._configure()
        self._launch()
        self._wait_ready(timeout)

    def _place_cluster(self) -> Path:
        """Put the cluster where the postgres user can reach it and the socket path fits.

        As root, data dirs often sit under 0700 parents (/root, pytest's tmp dirs) the
        postgres user cannot traverse; then the cluster lives in /tmp and data_dir gets
        a `pgdata` symlink to it, so the socket dir is still reachable from data_dir.
        """
        assert self.data_dir is not None
        _chown(self.data_dir, self.run_as)
        wanted = self.data_dir / "pgdata"
        if len(str(wanted)) <= MAX_SOCKET_DIR_LEN and _user_can_write(self.data_dir, self.run_as):
            return wanted
        base = Path(tempfile.mkdtemp(prefix="payments-pg-", dir="/tmp"))
        base.chmod(0o755)
        _chown(base, self.run_as)
        wanted.symlink_to(base / "pgdata")
        self.relocated = True
        return base / "pgdata"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / args[0]), *args[1:]]
        return subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
            **_as_user(self.run_as),
        )

    def _initdb(self) -> None:
        assert self.pgdata is not None
        args = [
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not self.durable:
            args.append("--no-sync")
        result = self._run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout[-4000:]}")

    def _configure(self) -> None:
        """Loopback-only trust auth: fine for a throwaway local cluster, never for a shared one."""
        assert self.pgdata is not None
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.pgdata}'",
            "max_connections": "200",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# payments runtime\n" + lines)
        (self.pgdata / "pg_hba.conf").write_text(
            "# payments runtime: trust, loopback and the private socket only\n"
            "local all all trust\n"
            f"host  all all {LOOPBACK}/32 trust\n"
        )

    def _launch(self) -> None:
        """Run the postmaster directly (not via pg_ctl) so an early crash is seen at once."""
        assert self.bin_dir is not None
        assert self.pgdata is not None
        with open(self.log_file, "ab") as log_handle:
            self._process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.pgdata)],
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                **_as_user(self.run_as),
            )
        self.pid = self._process.pid

    def _probe(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise RuntimeError(f"PostgreSQL exited with code {code} during startup")
        assert self.port is not None
        return postgres_ready(LOOPBACK, self.port)

    def _wait_ready(self, timeout: float) -> None:
        try:
            self.ready_seconds = wait_for(self._probe, timeout, f"PostgreSQL on port {self.port}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise startup_error(exc, self.log_file) from None

    def _create_database(self) -> None:
        assert self.port is not None
        sock = pg_session(LOOPBACK, self.port, PG_SUPERUSER, "postgres")
        try:
            pg_execute(sock, f"CREATE DATABASE {PG_DATABASE}")
        finally:
            pg_close(sock)

    def is_running(self) -> bool:
        return pid_alive(self.pid, "postgres")

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: no checkpoint, crash recovery on the next start."""
        assert self.pgdata is not None
        self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "30")
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
        self._process, self.pid = None, None

    def restart(self, timeout: float = 60.0) -> float:
        """Start the cluster again on its data directory; seconds until it accepts logins."""
        started = time.monotonic()
        self._launch()
        self._wait_ready(timeout)
        return time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
        """`pg_ctl stop -m fast` aborts sessions but shuts down cleanly; SIGKILL is the backstop."""
        if self.pid is not None and self.is_running() and self.pgdata is not None:
            result = self._run(
                "pg_ctl",
                "stop",
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
            )
            if result.returncode != 0 or not wait_gone(self.pid, 5):
                log(f"pg_ctl stop failed ({result.stdout.strip()}); killing pid {self.pid}")
                terminate(self.pid, 5)
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._process = None
        self.pid = None

    def remove_data(self) -> None:
        """The relocated cluster lives outside data_dir, so it must be deleted explicitly."""
        if self.relocated and self.pgdata is not None:
            remove_tree(self.pgdata.parent)
            self.relocated = False
        remove_tree(self.data_dir)

    def to_state(self) -> dict[str, Any]:
        return {
            "managed": True,
            "dsn": self.dsn,
            "pid": self.pid,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "pgdata": str(self.pgdata),
            "bin_dir": str(self.bin_dir),
            "run_as": self.run_as,
            "durable": self.durable,
            "relocated": self.relocated,
            "log": str(self.log_file),
            "ready_seconds": self.ready_seconds,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PostgresNode:
        return cls(
            data_dir=Path(state["data_dir"]),
            pgdata=Path(state["pgdata"]),
            port=state["port"],
            pid=state["pid"],
            bin_dir=Path(state["bin_dir"]),
            run_as=state.get("run_as"),
            durable=state.get("durable", True),
            relocated=state.get("relocated", False),
            ready_seconds=state.get("ready_seconds"),
        )


# --------------------------------------------------------------------------- CLI


def _load_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    env_lines = [
        f"export {KAFKA_ENV}={shlex.quote(state['kafka']['bootstrap'])}",
        f"export {DATABASE_ENV}={shlex.quote(state['postgres']['dsn'])}",
    ]
    (state_dir / "env").write_text("\n".join(env_lines) + "\n")


def _reuse(previous: dict[str, Any] | None, node_type: type[KafkaNode] | type[PostgresNode]) -> bool:
    return bool(previous and previous.get("managed") and node_type.from_state(previous).is_running())


def _is_own_endpoint(previous: dict[str, Any] | None, key: str, value: str) -> bool:
    """A shell that sourced our env file must not make our own (dead) server look external."""
    return bool(previous and previous.get("managed") and previous.get(key) == value)


def _up_kafka(state_dir: Path, previous: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    if previous is not None and _reuse(previous, KafkaNode):
        return previous
    external = os.environ.get(KAFKA_ENV)
    if external and not _is_own_endpoint(previous, "bootstrap", external):
        return {"managed": False, "bootstrap": external}
    log("starting Kafka")
    node = KafkaNode().start(
        state_dir / "kafka", preferred_port(DEFAULT_KAFKA_PORT), timeout=timeout, detach=True
    )
    return node.to_state()


def _up_postgres(state_dir: Path, previous: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    if previous is not None and _reuse(previous, PostgresNode):
        return previous
    external = os.environ.get(DATABASE_ENV)
    if external and not _is_own_endpoint(previous, "dsn", external):
        return {"managed": False, "dsn": external}
    log("starting PostgreSQL")
    node = PostgresNode().start(
        state_dir / "postgres",
        preferred_port(DEFAULT_POSTGRES_PORT),
        durable=True,
        timeout=timeout,
        detach=True,
    )
    return node.to_state()


def _describe(state: dict[str, Any]) -> str:
    kafka, postgres = state["kafka"], state["postgres"]
    lines = [f"kafka     {kafka['bootstrap']}" + ("" if kafka["managed"] else "  (external, from env)")]
    if kafka.get("managed") and kafka.get("ready_seconds") is not None:
        lines[-1] += f"  (ready in {kafka['ready_seconds']:.2f}s after launch, pid {kafka['pid']})"
    lines.append(f"postgres  {postgres['dsn']}" + ("" if postgres["managed"] else "  (external, from env)"))
    return "\n".join(lines)


def cmd_up(state_dir: Path, timeout: float) -> int:
    previous = _load_state(state_dir)
    state: dict[str, Any] = {}
    try:
        state["kafka"] = _up_kafka(state_dir, previous.get("kafka"), timeout)
        state["postgres"] = _up_postgres(state_dir, previous.get("postgres"), timeout)
    except BaseException:
        _stop_started(state, previous)
        raise
    _write_state(state_dir, state)
    if state["kafka"] is previous.get("kafka") and state["postgres"] is previous.get("postgres"):
        print(f"already up (state in {state_dir})")
    print(_describe(state))
    print(f"env file: {state_dir / 'env'}  (source it: `. {state_dir / 'env'}`)")
    return 0


def _stop_started(state: dict[str, Any], previous: dict[str, Any]) -> None:
    """If `up` fails half-way, do not leave the half that did start running unrecorded."""
    for key, node_type in (("kafka", KafkaNode), ("postgres", PostgresNode)):
        entry = state.get(key)
        if entry and entry.get("managed") and entry is not previous.get(key):
            _stop_entry(entry, node_type)


def _stop_entry(entry: dict[str, Any], node_type: type[KafkaNode] | type[PostgresNode]) -> None:
    node = node_type.from_state(entry)
    node.stop()
    if isinstance(node, PostgresNode):
        node.remove_data()
    else:
        remove_tree(node.data_dir)


def cmd_down(state_dir: Path) -> int:
    state = _load_state(state_dir)
    if not state:
        log(f"nothing to stop: no state in {state_dir}")
        return 0
    for key, node_type in (("kafka", KafkaNode), ("postgres", PostgresNode)):
        entry = state.get(key)
        if entry and entry.get("managed"):
            log(f"stopping {key} (pid {entry.get('pid')})")
            _stop_entry(entry, node_type)
    for name in ("state.json", "env"):
        (state_dir / name).unlink(missing_ok=True)
    try:
        state_dir.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT):
            raise
    print("stopped")
    return 0


def cmd_env(state_dir: Path) -> int:
    env_file = state_dir / "env"
    if not env_file.is_file():
        log(f"no env file in {state_dir}; run `python3 deploy/runtime.py up` first")
        return 1
    sys.stdout.write(env_file.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Kafka + PostgreSQL for the payments project.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start Kafka and PostgreSQL (detached)"),
        ("down", "stop what `up` started and delete its data"),
        ("env", "print the shell env file"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--state-dir", type=Path, default=Path(".run"))
        if name == "up":
            command.add_argument("--timeout", type=float, default=90.0, help="readiness deadline per server")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.expanduser().resolve()
    if args.command == "up":
        return cmd_up(state_dir, args.timeout)
    if args.command == "down":
        return cmd_down(state_dir)
    return cmd_env(state_dir)


if __name__ == "__main__":
    sys.exit(main())
