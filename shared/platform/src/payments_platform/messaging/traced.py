"""The spans of one consume batch (payments_platform.tracing; only while tracing is on).

A batch applies many messages, from many traces, in one transaction. Each message
applied gets a `process <topic>` span whose parent is the context its record carried
(the producer's span: the message's own trace goes on here), linked to one
`apply batch <consumer>` span, which links every message's producer back. What a message
causes is published under its own span (`tracing.causing`), so each answer belongs to
the trace of its cause.

Every span of a batch starts when its messages are handed to the handler and ends when
the transaction has committed (or failed): a message's span lasts as long as its
batch, because that is when its effects became durable; its own share of the batch is
not measured. No span per SQL statement: a batch is a handful of statements whatever
its size, and per-statement spans on the hot path (asyncpg's instrumentation) would cost
more than the messages they describe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from payments_platform import tracing

if TYPE_CHECKING:
    from .consumer import Delivery

# What one span keeps of the links of a batch of thousands (the SDK's own default).
MAX_LINKS = 128


class BatchTrace:
    def __init__(self, consumer: str, group_id: str, deliveries: Sequence[Delivery]) -> None:
        parents = [tracing.from_headers(d.headers) for d in deliveries]
        linked = [p for p in parents if p is not None]
        self.batch = tracing.start(
            f"apply batch {consumer}",
            links=linked[:MAX_LINKS],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.batch.message_count": len(deliveries),
                "messaging.consumer.group.name": group_id,
                "payments.consumer": consumer,
            },
        )
        batch = self.batch.get_span_context()
        self.messages: dict[UUID, Span] = {}
        for delivery, parent in zip(deliveries, parents, strict=True):
            message = delivery.message
            span = self.messages[message.event_id] = tracing.start(
                f"process {delivery.topic}", parent=parent, kind=SpanKind.CONSUMER
            )
            # Built only for a span that records: most are not, where traces are sampled.
            if span.is_recording():
                span.add_link(batch)
                span.set_attributes(
                    {
                        "messaging.system": "kafka",
                        "messaging.operation.type": "process",
                        "messaging.destination.name": delivery.topic,
                        "messaging.destination.partition.id": str(delivery.partition),
                        "messaging.kafka.offset": delivery.offset,
                        "messaging.consumer.group.name": group_id,
                        "messaging.message.id": str(message.event_id),
                        "payments.message.type": message.type,
                        "payments.correlation_id": str(message.correlation_id),
                        "payments.account_id": message.account_id,
                    }
                )

    @contextmanager
    def applying(self) -> Iterator[None]:
        """Inside: the batch span current, and each message's effects in its own span."""
        with tracing.causing(self.messages), trace.use_span(self.batch, end_on_exit=False):
            yield

    def failed(self, exc: BaseException, event_id: UUID | None = None) -> None:
        """The batch (or, with `event_id`, one message of it) failed."""
        one = self.messages.get(event_id) if event_id is not None else None
        spans = [one] if one is not None else [self.batch, *self.messages.values()]
        for span in spans:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200])

    def end(self) -> None:
        for span in self.messages.values():
            span.end()
        self.batch.end()


@contextmanager
def applying(batch: BatchTrace | None) -> Iterator[None]:
    if batch is None:
        yield
        return
    with batch.applying():
        yield
