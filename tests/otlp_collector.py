"""A small OTLP/HTTP trace receiver for tests: what the services export, decoded.

The services export spans with the standard OTLP/HTTP protobuf exporter to
`POST /v1/traces`; this receiver decodes each `ExportTraceServiceRequest` with
opentelemetry-proto (installed with the exporter) and keeps every span with the
service that sent it. Chosen over a real OpenTelemetry Collector or Jaeger built from
the Go module proxy: either is a build of hundreds of modules (minutes on a fresh CI
machine, where `make test` must stay under 20) to check what the wire format already
says, and a test needs the spans in hand, not in a UI. The wire format is the real one:
the same exporter would talk to a collector.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(hash=False)
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id)
    error: bool = False

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", "?"))
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=service,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex() or None,
                        name=s.name,
                        kind=KINDS.get(s.kind, str(s.kind)),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                        error=s.status.code == 2,
                    )
                )
    return spans


class Collector:
    """Receives on 127.0.0.1 (a free port) until stopped."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                received = decode(body)
                with collector._lock:
                    collector.spans.extend(received)
                    collector.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-collector", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Collector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return sorted((s for s in self.received() if s.trace_id == trace_id), key=lambda s: s.start_ns)

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], *, timeout: float = 30.0, what: str = "spans"
    ) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while True:
            spans = self.received()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what} after {timeout}s; received {len(spans)} spans:\n" + table(spans)
                )
            time.sleep(0.1)


def table(spans: Iterable[ReceivedSpan]) -> str:
    """One line per span, start order, indented under its parent (for failures and the report)."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    by_id = {s.span_id: s for s in spans}
    if not spans:
        return "(none)"
    zero = spans[0].start_ns

    def depth(s: ReceivedSpan) -> int:
        d, seen = 0, set()
        while s.parent_id in by_id and s.span_id not in seen:
            seen.add(s.span_id)
            s = by_id[s.parent_id]
            d += 1
        return d

    lines = []
    for s in spans:
        parent = s.parent_id or "-"
        lines.append(
            f"{(s.start_ns - zero) / 1e6:9.1f} ms {s.duration_ms:8.1f} ms  {'  ' * depth(s)}{s.name}"
            f"  [{s.service}, {s.kind}]  span {s.span_id} parent {parent} trace {s.trace_id[:8]}"
            + (f" links {len(s.links)}" if s.links else "")
            + (" ERROR" if s.error else "")
        )
    return "\n".join(lines)
