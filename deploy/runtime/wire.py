"""Readiness by each server's own wire protocol, never by sleeping a fixed time.

Kafka: ApiVersions + Metadata. PostgreSQL: the startup handshake and a simple query.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class WireProtocolError(RuntimeError):
    pass


def recv_exact(sock: socket.socket, size: int) -> bytes:
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
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    response = recv_exact(sock, size)
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


@contextmanager
def kafka_socket(
    host: str, port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None
) -> Iterator[socket.socket]:
    """A connection to a broker listener, wrapped in TLS for an SSL listener (mutual TLS
    when the context carries a certificate: the brokers' own, a super user)."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        if tls is None:
            yield raw
            return
        with tls.wrap_socket(raw, server_hostname=host) as wrapped:
            yield wrapped


def kafka_ready(host: str, port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> bool:
    """True once the broker answers the protocol and has registered itself unfenced.

    ApiVersions alone can succeed while the broker is still fenced, when creating a
    topic would fail with "no brokers available"; the Metadata check closes that gap.
    """
    try:
        with kafka_socket(host, port, timeout, tls) as sock:
            return _api_versions_ok(sock) and port in _metadata_broker_ports(sock)
    except (OSError, WireProtocolError, struct.error):
        return False


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.at = body, 0

    def take(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from(fmt, self.body, self.at)
        self.at += struct.calcsize(fmt)
        return values

    def number(self, fmt: str) -> int:
        return self.take(fmt)[0]

    def string(self) -> str | None:
        length = self.number(">h")
        if length < 0:
            return None
        value = self.body[self.at : self.at + length].decode()
        self.at += length
        return value

    def ints(self) -> list[int]:
        return [self.number(">i") for _ in range(max(0, self.number(">i")))]


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def partition_states(sock: socket.socket) -> list[PartitionState]:
    """Metadata v1 for every topic: each partition's leader, replicas and in-sync replicas."""
    reader = _Reader(_kafka_call(sock, 3, 1, 3, struct.pack(">i", -1)))
    for _ in range(reader.number(">i")):  # brokers
        reader.number(">i")
        reader.string()
        reader.number(">i")
        reader.string()
    reader.number(">i")  # controller id (in KRaft, any live broker)
    states = []
    for _ in range(reader.number(">i")):
        reader.number(">h")
        topic = reader.string() or ""
        reader.number(">b")
        for _ in range(reader.number(">i")):
            reader.number(">h")
            partition, leader = reader.take(">ii")
            states.append(
                PartitionState(topic, partition, leader, tuple(reader.ints()), tuple(reader.ints()))
            )
    return states


# CreateAcls codes (org.apache.kafka.common.acl / resource).
RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
PATTERN = {"literal": 3, "prefixed": 4}
OPERATION = {
    "All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
    "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12,
}  # fmt: skip
ALLOW = 3


@dataclass(frozen=True)
class Acl:
    principal: str
    operation: str
    resource: str
    name: str
    pattern: str = "literal"


def _string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def create_acls(sock: socket.socket, acls: list[Acl]) -> None:
    """CreateAcls v1 (key 30), on a connection of a super user; raises on any refusal."""
    body = struct.pack(">i", len(acls))
    for acl in acls:
        body += (
            struct.pack(">b", RESOURCE[acl.resource])
            + _string(acl.name)
            + struct.pack(">b", PATTERN[acl.pattern])
            + _string(acl.principal)
            + _string("*")
            + struct.pack(">bb", OPERATION[acl.operation], ALLOW)
        )
    reader = _Reader(_kafka_call(sock, 30, 1, 4, body))
    reader.number(">i")  # throttle time
    if reader.number(">i") != len(acls):
        raise WireProtocolError("CreateAcls answered for a different number of ACLs")
    errors = []
    for acl in acls:
        code, message = reader.number(">h"), reader.string()
        if code != 0:
            errors.append(f"{acl}: error {code} {message}")
    if errors:
        raise WireProtocolError("CreateAcls refused: " + "; ".join(errors))


def _pg_message(sock: socket.socket) -> tuple[bytes, bytes]:
    kind = recv_exact(sock, 1)
    (length,) = struct.unpack(">i", recv_exact(sock, 4))
    return kind, recv_exact(sock, length - 4)


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
