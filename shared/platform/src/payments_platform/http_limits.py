"""Limits that keep an HTTP endpoint answering while some clients misbehave.

uvicorn times out idle keep-alive connections but not a client that sends its request
line and headers one byte at a time (slowloris), nor one that never finishes its body,
and it reads a body of any size. Here: a deadline for the request head, a cap on its
size, a cap on the body (413 as soon as Content-Length or the bytes streamed so far
exceed it, without reading the rest) and a deadline for the body (408).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEAD_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_S = 5
# Bounds sockets and in-flight requests; a slow client is closed long before this fills.
MAX_CONNECTIONS = 2048


class BoundedHeadProtocol(HttpToolsProtocol):
    """Closes a connection whose request head is not complete within HEAD_TIMEOUT_S or
    grows beyond MAX_HEAD_BYTES."""

    _head_deadline: asyncio.TimerHandle | None = None
    _head_bytes: int = 0
    _in_head: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        super().data_received(data)
        if was_in_head and self._in_head:  # the whole chunk was head: no body in it yet
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self._refuse(b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0
        self._head_deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        self._in_head = False
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        self._refuse(b"408 Request Timeout")

    def _refuse(self, status: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()


def server_limits() -> dict[str, Any]:
    """uvicorn.Config arguments every service's HTTP server runs with."""
    return {
        "http": BoundedHeadProtocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": MAX_CONNECTIONS,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


@dataclass
class BodyLimit:
    """ASGI middleware: bodies of requests under `path_prefix` are at most `max_bytes`
    and arrive within `timeout_s`."""

    app: ASGIApp
    max_bytes: int
    timeout_s: float
    path_prefix: str = "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 413, "payload_too_large", f"the body is limited to {self.max_bytes} bytes")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _BodyTooSlow
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _answer(
                    send, 413, "payload_too_large", f"the body is limited to {self.max_bytes} bytes"
                )
        except _BodyTooSlow:
            if not started:
                await _answer(send, 408, "request_timeout", "the body did not arrive in time")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
