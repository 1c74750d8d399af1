"""The outbox: messages written in the same transaction as the change that caused them,
published afterwards by a relay with an idempotent producer (acks=all).

A row keeps the W3C trace context it was written under (`traceparent`, `tracestate`
columns; payments_platform.tracing), and the relay publishes it as record headers from
a producer span of its own, so a trace goes on through the outbox and the relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry.trace import Span, SpanKind, StatusCode
from prometheus_client import Counter, Gauge
from pydantic import AliasChoices, Field
from pydantic_core import from_json, to_json
from pydantic_settings import BaseSettings, SettingsConfigDict

from payments_contracts import Envelope
from payments_contracts.topics import Topic, TopicRegistry
from payments_platform import tracing
from payments_platform.kafka import client_options
from payments_platform.sessions import keeps_session_state

from .partitioner import partition_for
from .transient import is_transient, retrying

log = logging.getLogger(__name__)

# Refusals that no retry can change: the message itself is what Kafka will not take.
_UNPUBLISHABLE = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
)

PUBLISHED = Counter("outbox_published_total", "Outbox messages published to Kafka", ["service"])
SET_ASIDE = Counter(
    "outbox_unpublishable_total", "Outbox messages Kafka refused for good, set aside", ["service"]
)
BACKLOG = Gauge("outbox_backlog", "Outbox messages in the last fetch (0 when caught up)", ["service"])


class OutgoingMessage(NamedTuple):
    """A named tuple rather than a frozen dataclass: one is built per message published,
    and a frozen dataclass sets each field through object.__setattr__."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def of(cls, topic: Topic | str, message: Envelope, *, value: bytes | None = None) -> OutgoingMessage:
        """`value`: the message's JSON when the caller has it already (serialized once)."""
        name = topic if isinstance(topic, str) else topic.name
        traceparent = tracestate = None
        if tracing.ENABLED:
            traceparent, tracestate = tracing.context_for(message.causation_id)
        return cls(
            name,
            message.key(),
            message.model_dump_json().encode() if value is None else value,
            {"type": message.type, "event_id": str(message.event_id)},
            traceparent,
            tracestate,
        )


def encoded_size_over(message: OutgoingMessage, limit: int) -> int | None:
    """The bytes of the record batch carrying `message` alone, when they exceed `limit`
    (a topic's max.message.bytes, which the broker compares them with); None when it fits.
    Encoded by aiokafka as the relay's producer encodes it (magic 2, no compression). Its
    upper bound first, which copies nothing: the exact encoding only near the limit."""
    key, value = message.key, message.value
    headers = [(k, v.encode()) for k, v in message.headers.items()]
    if DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) <= limit:
        return None
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=2**31 - 1,
    )
    builder.append(0, timestamp=0, key=key, value=value, headers=headers)
    size = len(builder.build())
    return size if size > limit else None


@dataclass
class Outbox:
    """What a unit of work will publish once its transaction commits."""

    registry: TopicRegistry
    messages: list[OutgoingMessage] = field(default_factory=list)

    def publish(self, message: Envelope) -> None:
        """Queue `message` for its topic (each message type has exactly one)."""
        self.messages.append(OutgoingMessage.of(self.registry.for_message(message), message))

    def add(self, message: OutgoingMessage) -> None:
        self.messages.append(message)

    def extend(self, other: Outbox) -> None:
        self.messages.extend(other.messages)

    async def write(self, conn: asyncpg.Connection) -> int:
        if not self.messages:
            return 0
        # pydantic_core's JSON, not the json module's: a row or two per document, and
        # json.dumps of the headers alone was about 4% of invoice-sync's CPU.
        await conn.copy_records_to_table(
            "outbox",
            records=[
                (m.topic, m.key, m.value, to_json(m.headers).decode(), m.traceparent, m.tracestate)
                for m in self.messages
            ],
            columns=["topic", "key", "value", "headers", "traceparent", "tracestate"],
        )
        written = len(self.messages)
        self.messages = []
        return written


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # After a round that published something, wait this long before the next, so the
    # commits of a low steady rate share a round.
    gather_ms: float = Field(0.0, ge=0, validation_alias=AliasChoices("PAYMENTS_RELAY_GATHER_MS"))


class _ProducerSpent(Exception):
    """The relay's producer had a batch refused; publishing goes on with a new one."""


class OutboxRelay:
    """Publishes outbox rows in id order and deletes them once Kafka acknowledged them.

    One relay per schema publishes at a time (an advisory lock), so per-key order on
    the topic is the commit order of the rows. A crash after Kafka acknowledged but
    before the delete re-publishes those rows: consumers dedupe by event_id.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap: str,
        *,
        service: str,
        batch_size: int = 2000,
        idle_poll_s: float = 0.5,
        gather_s: float | None = None,
    ) -> None:
        self._pool = pool
        self._gather_s = RelaySettings().gather_ms / 1000 if gather_s is None else gather_s
        self._bootstrap = bootstrap
        self._service = service
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._partitions: dict[str, int] = {}
        self.ready = False

    def wake(self) -> None:
        self._wake.set()

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **client_options(self._bootstrap),
            client_id=f"{self._service}-outbox",
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=512 * 1024,
            request_timeout_ms=30000,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish until `stopping` is set and the outbox is empty."""
        while True:
            # A new producer after any failure: an idempotent producer whose batch was
            # refused has spent that partition's sequence numbers.
            producer = self._producer()
            async for attempt in retrying("outbox producer start", until=stopping):
                with attempt:
                    await producer.start()
            try:
                if await self._relay_on_one_connection(producer, stopping):
                    return
            finally:
                self.ready = False
                await producer.stop()
            await asyncio.sleep(1.0)

    async def _relay_on_one_connection(self, producer: AIOKafkaProducer, stopping: asyncio.Event) -> bool:
        """Relay until drained and stopping (True), or until a failure (False: start over)."""
        try:
            async with self._pool.acquire() as conn:
                if not await self._hold_lock(conn, stopping):
                    return True
                self.ready = True
                while True:
                    # Cleared before the fetch, so a commit during this round wakes the next
                    # one; a round short of a full batch needs no second, empty fetch.
                    self._wake.clear()
                    published = await self._publish_once(conn, producer)
                    if published >= self._batch_size:
                        continue
                    if stopping.is_set():
                        if not published:
                            return True
                        continue
                    if published and self._gather_s:
                        # Commits arriving meanwhile share the next round: at a low steady
                        # rate each round (a fetch, a produce request, a delete) otherwise
                        # carries one batch's one or two messages.
                        await asyncio.sleep(self._gather_s)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)
        except _ProducerSpent:
            return False
        except Exception as exc:
            self.ready = False
            if is_transient(exc):
                log.warning("outbox relay interrupted, reconnecting", extra={"error": repr(exc)})
            else:
                log.exception("outbox relay failed; retrying")
            return False

    async def _hold_lock(self, conn: asyncpg.Connection, stopping: asyncio.Event) -> bool:
        """Become the schema's only publishing relay; False if asked to stop while waiting."""
        keeps_session_state(conn)  # the lock is the session's: unlocked when the pool takes it back
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext(current_schema() || '.outbox'))"):
            if stopping.is_set():
                return False
            await asyncio.sleep(self._idle_poll_s)
        return True

    async def _publish_once(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> int:
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers, traceparent, tracestate FROM outbox ORDER BY id LIMIT $1",
            self._batch_size,
        )
        BACKLOG.labels(self._service).set(len(rows))
        if not rows:
            return 0
        acknowledged, failure = await self._send(producer, rows)
        if acknowledged:
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", acknowledged)
            PUBLISHED.labels(self._service).inc(len(acknowledged))
        if isinstance(failure, _UNPUBLISHABLE):
            done = set(acknowledged)
            await self._publish_one_by_one(conn, [r for r in rows if r["id"] not in done])
        if failure is not None:
            raise failure
        return len(rows)

    async def _send(
        self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]
    ) -> tuple[list[int], BaseException | None]:
        """The ids Kafka acknowledged, and the first failure if any batch failed."""
        spans: list[list[Span]] = []
        # Enqueue in order (per-partition order is outbox order), then wait for every ack.
        batches = [(ids, await enqueue) for ids, enqueue in await self._batches(producer, rows, spans)]
        results = await asyncio.gather(*(ack for _, ack in batches), return_exceptions=True)
        acknowledged = [
            i
            for (ids, _), result in zip(batches, results, strict=True)
            if not isinstance(result, BaseException)
            for i in ids
        ]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        for batch_spans, result in zip(spans, results, strict=False):
            for span in batch_spans:
                if isinstance(result, BaseException):
                    span.set_status(StatusCode.ERROR, repr(result))
                span.end()
        return acknowledged, failure

    async def _publish_one_by_one(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
        """Find the rows Kafka refuses for good and set them aside; publish the others."""
        producer: AIOKafkaProducer | None = None
        try:
            for row in rows:
                if producer is None:
                    producer = self._producer()
                    await producer.start()
                _, failure = await self._send(producer, [row])
                if isinstance(failure, _UNPUBLISHABLE):
                    await producer.stop()
                    producer = None
                    await self._set_aside(conn, row, f"{type(failure).__name__}: {failure}"[:2000])
                    continue
                if failure is not None:
                    raise failure
                await conn.execute("DELETE FROM outbox WHERE id = $1", row["id"])
                PUBLISHED.labels(self._service).inc()
        finally:
            if producer is not None:
                await producer.stop()
        raise _ProducerSpent

    async def _set_aside(self, conn: asyncpg.Connection, row: asyncpg.Record, reason: str) -> None:
        log.error(
            "outbox message refused by Kafka for good; set aside",
            extra={
                "outbox_id": row["id"],
                "topic": row["topic"],
                "bytes": len(row["value"]),
                "error": reason,
            },
        )
        async with conn.transaction():
            await conn.execute(
                """
                INSERT INTO outbox_unpublishable (id, topic, key, value, headers, created_at, reason)
                SELECT id, topic, key, value, headers, created_at, $2 FROM outbox WHERE id = $1
                ON CONFLICT (id) DO NOTHING
                """,
                row["id"],
                reason,
            )
            await conn.execute("DELETE FROM outbox WHERE id = $1", row["id"])
        SET_ASIDE.labels(self._service).inc()

    async def _batches(
        self, producer: AIOKafkaProducer, rows: list[asyncpg.Record], spans: list[list[Span]]
    ) -> list[tuple[list[int], Awaitable[asyncio.Future[object]]]]:
        """Whole record batches per partition, in outbox order within each partition.

        Appending to batches ourselves instead of one `send` per row keeps the relay's
        cost per message small; the partition is the Java client's murmur2 of the key,
        so a message lands where any other producer would put it. `spans` gets the
        producer spans of each batch, in the order of the batches returned.
        """
        by_partition: dict[tuple[str, int], list[asyncpg.Record]] = {}
        counts: dict[str, int] = {}
        for row in rows:
            topic = row["topic"]
            partitions = counts.get(topic)
            if partitions is None:
                partitions = counts[topic] = await self._partition_count(producer, topic)
            by_partition.setdefault((topic, partition_for(row["key"], partitions)), []).append(row)
        sends: list[tuple[list[int], Awaitable[asyncio.Future[object]]]] = []
        for (topic, partition), members in by_partition.items():
            batch = producer.create_batch()
            ids: list[int] = []
            batch_spans: list[Span] = []
            for row in members:
                headers = [(k, v.encode()) for k, v in from_json(row["headers"]).items()]
                if row["traceparent"] is not None:
                    headers += self._trace_headers(row, topic, partition, batch_spans)
                record = {"key": row["key"], "value": row["value"], "timestamp": None, "headers": headers}
                if batch.append(**record) is None:
                    sends.append((ids, producer.send_batch(batch, topic, partition=partition)))
                    spans.append(batch_spans)
                    batch, ids, batch_spans = producer.create_batch(), [], []
                    if batch.append(**record) is None:
                        raise RecordTooLargeError(f"outbox row {row['id']} does not fit in a batch")
                ids.append(row["id"])
            sends.append((ids, producer.send_batch(batch, topic, partition=partition)))
            spans.append(batch_spans)
        return sends

    def _trace_headers(
        self, row: asyncpg.Record, topic: str, partition: int, spans: list[Span]
    ) -> list[tuple[str, bytes]]:
        """The row's trace context as headers: through a producer span of the relay while
        tracing is on (it ends at Kafka's acknowledgement), else as stored."""
        traceparent, tracestate = row["traceparent"], row["tracestate"]
        stored = tracing.parse(traceparent, tracestate) if tracing.ENABLED else None
        if stored is not None and stored.trace_flags.sampled:
            span = tracing.start(f"send {topic}", parent=stored, kind=SpanKind.PRODUCER)
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition),
                    "payments.outbox.id": row["id"],
                    "service.component": f"{self._service} outbox relay",
                }
            )
            spans.append(span)
            context = span.get_span_context()
            traceparent, tracestate = tracing.traceparent_of(context), tracing.tracestate_of(context)
        headers = [(tracing.TRACEPARENT, traceparent.encode())]
        if tracestate:
            headers.append((tracing.TRACESTATE, tracestate.encode()))
        return headers

    async def _partition_count(self, producer: AIOKafkaProducer, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = len(await producer.partitions_for(topic))
            self._partitions[topic] = count
        return count
