"""payments_platform.tracing and the spans of a consume batch, in-process with an
in-memory exporter: W3C context as text and headers, which span a published message goes
on in, the batch's spans and links, trace ids in log lines, and nothing at all while off."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import date

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from erp_invoices import erp_invoice
from payments_contracts.topics import TopicRegistry
from payments_platform import observability, tracing
from payments_platform.messaging.consumer import Delivery
from payments_platform.messaging.outbox import OutgoingMessage
from payments_platform.messaging.traced import BatchTrace

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory (the process-wide provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "ENABLED", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def message(number: str = "INV-1") -> object:
    return erp_invoice("C-1", number, total="10.00", invoice_date=date(2026, 1, 1), due_date=date(2026, 2, 1))


def test_traceparent_text_round_trips_and_bad_values_are_no_context() -> None:
    context = tracing.parse(TRACEPARENT, "vendor=abc")
    assert context is not None and context.is_remote
    assert (context.trace_id, context.span_id, int(context.trace_flags)) == (TRACE_ID, SPAN_ID, 1)
    assert tracing.traceparent_of(context) == TRACEPARENT
    assert tracing.tracestate_of(context) == "vendor=abc"
    assert tracing.parse(TRACEPARENT.encode()) == tracing.parse(TRACEPARENT)
    for bad in (
        None,
        "",
        "garbage",
        "ff-" + TRACEPARENT[3:],
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-xyz-1-01",
    ):
        assert tracing.parse(bad) is None, bad


def test_a_records_headers_give_its_context() -> None:
    headers = [("type", b"x"), ("traceparent", TRACEPARENT.encode()), ("tracestate", b"a=1")]
    context = tracing.from_headers(headers)
    assert context is not None and context.trace_id == TRACE_ID
    assert tracing.from_headers([("type", b"x")]) is None and tracing.from_headers(None) is None


def test_off_nothing_is_traced_and_a_published_message_carries_no_context() -> None:
    assert not tracing.ENABLED  # no endpoint in the test environment
    outgoing = OutgoingMessage.of("invoices", message())  # type: ignore[arg-type]
    assert (outgoing.traceparent, outgoing.tracestate) == (None, None)
    with tracing.resumed(TRACEPARENT, "never") as span:
        assert not span.get_span_context().is_valid


def test_without_an_endpoint_the_environment_asks_for_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.wanted()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted()


def test_a_published_message_goes_on_in_its_causes_span_else_the_current_one(
    spans: InMemorySpanExporter,
) -> None:
    cause, other = message("INV-1"), message("INV-2")
    applying = tracing.start("process", parent=tracing.parse(TRACEPARENT))
    answer = erp_invoice(
        "C-1", "INV-3", total="1.00", invoice_date=date(2026, 1, 1), due_date=date(2026, 2, 1)
    )
    answer = answer.model_copy(update={"causation_id": cause.event_id})  # type: ignore[attr-defined]
    with tracing.causing({cause.event_id: applying}):  # type: ignore[attr-defined]
        outgoing = OutgoingMessage.of("invoices", answer)
        assert outgoing.traceparent == tracing.traceparent_of(applying.get_span_context())
        # A message whose cause is not in the batch: the current span, or none.
        assert OutgoingMessage.of("invoices", other).traceparent is None  # type: ignore[arg-type]
        current = tracing.start("current")
        with trace.use_span(current, end_on_exit=True):
            assert OutgoingMessage.of("invoices", other).traceparent == tracing.traceparent_of(  # type: ignore[arg-type]
                current.get_span_context()
            )
    applying.end()


def test_a_batch_gives_each_message_a_span_in_its_own_trace_linked_to_one_batch_span(
    spans: InMemorySpanExporter,
) -> None:
    registry = TopicRegistry()
    traced, untraced = message("INV-1"), message("INV-2")
    deliveries = [
        Delivery(registry.erp_invoices.name, 0, 7, traced, (("traceparent", TRACEPARENT.encode()),)),  # type: ignore[arg-type]
        Delivery(registry.erp_invoices.name, 1, 3, untraced, ()),  # type: ignore[arg-type]
    ]
    batch = BatchTrace("erp", "invoice-sync.erp", deliveries)
    with batch.applying():
        assert trace.get_current_span() is batch.batch
    batch.end()
    finished = {
        s.name + ":" + str(s.attributes.get("messaging.kafka.offset")): s for s in spans.get_finished_spans()
    }
    applied_batch = finished["apply batch erp:None"]
    first, second = finished["process erp.invoices:7"], finished["process erp.invoices:3"]
    assert first.kind is SpanKind.CONSUMER and first.parent is not None
    assert (first.context.trace_id, first.parent.span_id) == (
        TRACE_ID,
        SPAN_ID,
    )  # the producer's trace goes on
    assert second.parent is None and second.context.trace_id != TRACE_ID  # no context: a trace of its own
    assert [link.context.span_id for link in applied_batch.links] == [SPAN_ID]
    for span in (first, second):
        assert [link.context.span_id for link in span.links] == [applied_batch.context.span_id]
        assert span.attributes["payments.message.type"] == "erp.invoice.upserted"


def test_a_failed_batch_marks_its_spans(spans: InMemorySpanExporter) -> None:
    registry = TopicRegistry()
    batch = BatchTrace("erp", "g", [Delivery(registry.erp_invoices.name, 0, 1, message(), ())])  # type: ignore[arg-type]
    batch.failed(RuntimeError("database gone"))
    batch.end()
    assert all(not s.status.is_ok for s in spans.get_finished_spans())


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


def test_log_lines_carry_the_current_spans_trace_and_span_ids(
    spans: InMemorySpanExporter, root_logging: None
) -> None:
    observability.configure_logging("test-service")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = logging.getLogger("test")
    span = tracing.start("work", parent=tracing.parse(TRACEPARENT))
    with trace.use_span(span, end_on_exit=True):
        log.info("inside")
    log.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == f"{TRACE_ID:032x}"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in outside and "span_id" not in outside


def test_about_a_message_makes_its_span_current(spans: InMemorySpanExporter) -> None:
    applied = message()
    span = tracing.start("process")
    with tracing.causing({applied.event_id: span}), observability.about(applied):  # type: ignore[arg-type,attr-defined]
        assert trace.get_current_span() is span
    span.end()
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    assert [s.name for s in finished] == ["process"]


def test_the_relay_headers_of_a_row(spans: InMemorySpanExporter) -> None:
    """Stored context in, a producer span's context out (the row's span as its parent)."""
    from payments_platform.messaging.outbox import OutboxRelay

    relay = OutboxRelay.__new__(OutboxRelay)
    relay._service = "svc"
    made: list[object] = []
    row = {"id": 1, "traceparent": TRACEPARENT, "tracestate": None}
    headers = dict(relay._trace_headers(row, "invoices", 0, made))  # type: ignore[arg-type]
    (span,) = made
    span.end()  # type: ignore[attr-defined]
    (sent,) = spans.get_finished_spans()
    assert sent.kind is SpanKind.PRODUCER and sent.parent is not None and sent.parent.span_id == SPAN_ID
    assert headers["traceparent"].decode() == tracing.traceparent_of(sent.context)
    assert sent.attributes["payments.outbox.id"] == 1


def test_the_demo_portal_publishes_through_faststreams_telemetry_middleware_only_when_tracing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    from demo_portal.adapters.messaging import messaging

    def telemetry() -> list[object]:
        broker = messaging("127.0.0.1:1", TopicRegistry()).broker
        return [m for m in broker.middlewares if isinstance(m, KafkaTelemetryMiddleware)]

    assert telemetry() == []
    monkeypatch.setattr(tracing, "ENABLED", True)
    assert len(telemetry()) == 1
