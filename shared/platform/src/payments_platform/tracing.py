"""Distributed traces (OpenTelemetry): one pay command, one trace, across every service.

On only where `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set: spans go over OTLP/HTTP (protobuf) through a batching processor, sampled as the
standard `OTEL_TRACES_SAMPLER` variables say (default: parent-based, always on). Off,
no SDK is installed and the hot paths test one module flag per batch: nothing is read
from headers, no span is made, no trace column is written.

How a trace crosses what is not a function call:

- **Kafka**: W3C `traceparent` / `tracestate` record headers, the header names the
  maintained aiokafka instrumentation and FastStream use, so a producer instrumented
  either way joins the same trace.
- **The outbox**: a row stores the trace context of the span it was written under (its
  own columns), and the relay publishes it as headers from a producer span of its own.
  A published message takes the span of the message that caused it (`causing`): a batch
  applies many messages in one transaction, and each answer belongs to its cause's trace.
- **Rows a worker picks up later** (a payment to open a checkout for, an invoice to
  register): the row keeps the `traceparent` it was written under, and the worker
  resumes that trace (`resumed`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags, TraceState
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

# Read on every hot path: a plain module global, not a function call.
ENABLED = False

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Probes and scrapes: thousands of spans a day that say nothing about a payment.
EXCLUDED_URLS = "/health/live,/health/ready,/metrics"

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: Any = None
# Spans of the messages (or rows) being applied, by the event id a published message
# names as its cause; set around a batch's handler or a worker's recording round.
_CAUSES: ContextVar[Mapping[UUID, Span] | None] = ContextVar("payments_trace_causes", default=None)


class TracingSettings(BaseSettings):
    """OpenTelemetry's own variables, as the SDK and the exporter read them; listed here so
    the README's settings table names them (the SDK reads the sampler's itself)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP base URL (spans go to <url>/v1/traces); unset: no tracing at all",
    )
    traces_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        description="The full URL for spans, instead of the base URL",
    )
    service_name: str | None = Field(
        None,
        validation_alias=AliasChoices("OTEL_SERVICE_NAME"),
        description="The service name spans carry (default: the service's own name)",
    )
    disabled: bool = Field(
        False,
        validation_alias=AliasChoices("OTEL_SDK_DISABLED"),
        description="true: no tracing whatever is set",
    )
    sampler: str = Field(
        "parentbased_always_on",
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER"),
        description="e.g. parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0.01 to keep 1% of traces",
    )
    sampler_arg: str | None = Field(
        None, validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG"), description="the sampler's argument"
    )


def wanted(settings: TracingSettings | None = None) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, the SDK not disabled)."""
    settings = settings or TracingSettings()
    return not settings.disabled and bool(settings.traces_endpoint or settings.endpoint)


def configure(service: str) -> bool:
    """Install the SDK with an OTLP/HTTP exporter when the environment asks for it."""
    global ENABLED, _tracer, _provider
    settings = TracingSettings()
    if ENABLED or not wanted(settings):
        return ENABLED
    # Imported here: a process without an endpoint never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.name": settings.service_name or service}
    instance = os.environ.get("PAYMENTS_INSTANCE_ID")
    if instance:
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("payments_platform")
    ENABLED = True
    log.info("tracing on: spans exported over OTLP/HTTP", extra={"service.name": attributes["service.name"]})
    return True


def shutdown() -> None:
    """Export what is still queued (a stopping service's last spans), then stop."""
    global ENABLED, _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    ENABLED, _tracer, _provider = False, trace.NoOpTracer(), None


def tracer() -> trace.Tracer:
    return _tracer


def instrument_app(app: FastAPI) -> None:
    """Server spans for the app's requests (FastAPI's maintained instrumentation),
    probes and scrapes left out, and none of ASGI's per-message send/receive spans."""
    if not ENABLED:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )


# --- W3C trace context as text ------------------------------------------------------------


def traceparent_of(span_context: SpanContext) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def tracestate_of(span_context: SpanContext) -> str | None:
    return span_context.trace_state.to_header() or None


def parse(traceparent: str | bytes | None, tracestate: str | bytes | None = None) -> SpanContext | None:
    """A remote span context from W3C header values (None when absent or malformed)."""
    if not traceparent:
        return None
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", errors="replace")
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or parts[0] == "ff" or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    state = None
    if tracestate:
        if isinstance(tracestate, bytes):
            tracestate = tracestate.decode("ascii", errors="replace")
        state = TraceState.from_header([tracestate])
    flags &= TraceFlags.SAMPLED
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state)


def from_headers(headers: Sequence[tuple[str, bytes]] | None) -> SpanContext | None:
    """The trace context a Kafka record carries."""
    if not headers:
        return None
    parent = state = None
    for name, value in headers:
        if name == TRACEPARENT:
            parent = value
        elif name == TRACESTATE:
            state = value
    return parse(parent, state)


def parent_context(span_context: SpanContext | None) -> otel_context.Context | None:
    if span_context is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


# --- which trace a published message belongs to ------------------------------------------


@contextmanager
def causing(spans: Mapping[UUID, Span]) -> Iterator[None]:
    """Inside: a message published with one of these event ids as its cause goes on in
    that cause's span (its outbox row stores that span's context)."""
    token = _CAUSES.set(spans)
    try:
        yield
    finally:
        _CAUSES.reset(token)


def context_for(cause: UUID | str | None) -> tuple[str | None, str | None]:
    """(traceparent, tracestate) for a message caused by `cause`: its cause's span, else
    the current span, else none."""
    span: Span | None = None
    causes = _CAUSES.get()
    if causes is not None and cause is not None:
        key = cause if isinstance(cause, UUID) else _uuid(cause)
        span = causes.get(key) if key is not None else None
    if span is None:
        span = trace.get_current_span()
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None, None
    return traceparent_of(span_context), tracestate_of(span_context)


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


# --- spans ---------------------------------------------------------------------------------


def start(
    name: str,
    *,
    parent: SpanContext | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Sequence[SpanContext] = (),
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A span under `parent` (a remote context) or, without one, under the current span.

    A parent its trace's sampler left out goes on as it came, without a span of ours: the
    SDK would make a non-recording span (a sampler call and new ids) that records nothing
    either, and at 1% sampling that was most of tracing's cost per message."""
    if parent is not None and not parent.trace_flags.sampled:
        return trace.NonRecordingSpan(parent)
    return _tracer.start_span(
        name,
        context=parent_context(parent),
        kind=kind,
        links=[Link(c) for c in links if c.is_valid],
        attributes=attributes,
    )


@contextmanager
def resumed(
    traceparent: str | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    link_current: bool = False,
) -> Iterator[Span]:
    """A current span going on in the trace a stored `traceparent` names (a new trace
    without one). `link_current`: link the span current before (a webhook's request),
    whose trace this one is not part of."""
    if not ENABLED:
        yield trace.INVALID_SPAN
        return
    links = []
    if link_current:
        links.append(trace.get_current_span().get_span_context())
    span = start(name, parent=parse(traceparent), kind=kind, links=links, attributes=attributes)
    with trace.use_span(span, end_on_exit=True):
        yield span


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as log lines carry them."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


@contextmanager
def applying(event_id: UUID) -> Iterator[None]:
    """The span applying message `event_id` current inside (when a batch has one)."""
    causes = _CAUSES.get() if ENABLED else None
    span = causes.get(event_id) if causes is not None else None
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=False):
        yield
