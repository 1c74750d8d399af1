"""Readiness by each server's own wire protocol, never by sleeping a fixed time.

Kafka: ApiVersions + Metadata. PostgreSQL: the startup handshake and a simple query.
"""

from __future__ import annotations

import socket
import struct


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
