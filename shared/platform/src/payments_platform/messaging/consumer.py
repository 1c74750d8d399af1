"""Consume a batch, apply it and record it in one PostgreSQL transaction."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from payments_contracts import Envelope
from payments_contracts.topics import Topic, TopicRegistry
from payments_platform import tracing
from payments_platform.kafka import client_options
from payments_platform.membership import consumer_options, leave_group_on_stop

from .dead_letter import Position, dead_letter, described
from .fast_decoding import fast_decoder
from .outbox import Outbox
from .traced import BatchTrace, applying
from .transient import is_transient, retrying

log = logging.getLogger(__name__)

CONSUMED = Counter("consumer_messages_total", "Messages consumed", ["consumer", "topic"])
APPLIED = Counter("consumer_applied_total", "Messages applied (not duplicates)", ["consumer"])
DUPLICATES = Counter("consumer_duplicates_total", "Messages skipped as already applied", ["consumer"])
DEAD_LETTERS = Counter("consumer_dead_letters_total", "Messages dead-lettered", ["consumer", "topic"])
POSITION_CHECK_S = 5.0
HANDED_ERROR_MAX_WAIT_S = 5.0
# A missing grant or bad credentials: the cluster will answer the same until an operator
# acts, so the consumer stops and the service says why instead of polling forever.
REFUSALS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    AuthenticationFailedError,
    SaslAuthenticationFailed,
)
KAFKA_ERRORS = Counter(
    "consumer_kafka_errors_total",
    "Errors aiokafka handed to a poll (the group coordinator's), polled past",
    ["consumer"],
)
COORDINATOR_WAIT_S = 30.0
KAFKA_COMMIT_TIMEOUT_S = 5.0
GAPS = Counter(
    "consumer_gaps_total", "Batches that started past the stored offset and were read again", ["consumer"]
)
BATCH_SECONDS = Histogram("consumer_batch_seconds", "Time to apply one batch", ["consumer"])
# With consumer_lag, how stale what a consumer has applied is (the ReadModelStale alert).
LAST_APPLIED = Gauge(
    "consumer_last_applied_timestamp_seconds",
    "When the newest record of the last committed batch was written to Kafka (Unix time)",
    ["consumer"],
)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
# Each partition of a batch: its first offset and the offset after its last record.
Spans: TypeAlias = dict[tuple[str, int], tuple[int, int]]


def spans_of(records: Sequence[Record]) -> Spans:
    """The partitions of `records` and the offsets they cover, in one pass over them."""
    spans: Spans = {}
    for r in records:
        key = (r.topic, r.partition)
        span = spans.get(key)
        if span is None:
            spans[key] = (r.offset, r.offset + 1)
        elif r.offset < span[0] or r.offset >= span[1]:
            spans[key] = (min(span[0], r.offset), max(span[1], r.offset + 1))
    return spans


class Delivery(NamedTuple):
    """One decoded message and where it was read from: the contract's pydantic model, or a
    msgspec Struct of the same shape from a consumer built with `fast_decoding`.

    A named tuple rather than a frozen dataclass: one is built per message, and a frozen
    dataclass sets each field through object.__setattr__ (four times the cost)."""

    topic: str
    partition: int
    offset: int
    message: Envelope
    headers: Sequence[tuple[str, bytes]] = ()  # the record's, while tracing is on


@dataclass
class Transaction:
    """The open transaction a batch is applied in, and what it will publish."""

    connection: asyncpg.Connection
    outbox: Outbox


BatchHandler = Callable[[Sequence[Delivery], Transaction], Awaitable[None]]


class _ResumeFromDatabase(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: TransactionalConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Not waiting for the batch in the database: aiokafka calls this beside it, and a
        # slow batch must not hold the group's rebalance. The next owner's transaction
        # waits on the offsets' row lock, then skips what this batch committed.
        log.info(
            "partitions revoked",
            extra={
                "consumer": self._owner.name,
                "partitions": sorted(f"{t.topic}:{t.partition}" for t in revoked),
            },
        )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._owner._resume(assigned)


class TransactionalConsumer:
    """Applies batches from `topics` through `handle`, exactly once in effect.

    Offsets are read from and written to the service's database, never trusted from
    Kafka: on assignment each partition is sought to the offset after the last
    committed batch (or the beginning, for a new consumer). Kafka's committed offsets
    are updated afterwards only so the usual lag tooling works.

    The stored offsets make Kafka's redelivery harmless; a message published twice (the
    outbox relay is at-least-once) is a second record, which `processed_events` (one row
    per event id) skips. `dedupe=False` leaves that write out, for a handler whose every
    effect is idempotent and guarded against an older message arriving after a newer
    one, so a second copy changes nothing wherever it lands.
    """

    def __init__(
        self,
        *,
        service: str,
        name: str,
        registry: TopicRegistry,
        topics: Sequence[Topic],
        pool: asyncpg.Pool,
        bootstrap: str,
        handle: BatchHandler,
        on_commit: Callable[[], None] | None = None,
        batch_size: int = 500,
        group_id: str | None = None,
        dedupe: bool = True,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        fast_decoding: bool = False,
        partitions: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        self.service = service
        self.name = name
        self._registry = registry
        self._topics = {t.name: t for t in topics}
        for topic in topics:
            # Exported at 0 from the start: a counter whose series is born at 1 shows no
            # increase() to the alert on the first dead letter.
            DEAD_LETTERS.labels(name, topic.name)
        # Each topic's validator, looked up once: a record is validated straight from its
        # bytes into the message (one pass, no intermediate dict to throw away).
        # `fast_decoding`: msgspec Structs of the same shape instead of the pydantic models,
        # for a handler that only reads them (fast_decoding.py; the projector's decode
        # was 22% of its CPU).
        self._validators = {
            t.name: fast_decoder(t) if fast_decoding else t.decoder.validate_json for t in topics
        }
        self._pool = pool
        self._bootstrap = bootstrap
        self._handle = handle
        self._on_commit = on_commit or (lambda: None)
        self._batch_size = batch_size
        self._dedupe = dedupe
        # aiokafka's defaults (answer with the first byte, long poll when idle). A larger
        # fetch_min_bytes with a short wait was meant to gather a low steady rate into
        # bigger batches; measured at 500/s it did not change CPU per record, so every
        # service keeps the defaults (docs/decisions/0041-fetch-wait-default.md).
        self._fetch_min_bytes = fetch_min_bytes
        self._fetch_max_wait_ms = fetch_max_wait_ms
        # Given partitions are assigned, not balanced by the group: the workers of one
        # parallel rebuild split the partitions between them (status_projector.ops).
        self._partitions = [TopicPartition(t, p) for t, p in partitions] if partitions is not None else None
        # The topic prefix in the group: deployments (and test runs) sharing a cluster
        # must not join one group, or they rebalance each other all the time.
        self._group_id = group_id or f"{service}.{registry.prefix}{name}"
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._last_kafka_commit = 0.0
        self._last_position_check = time.monotonic()
        # Partitions sought to an offset the broker may no longer hold: the stored offset
        # after a gap, or 0 for a partition with none. A batch that then starts later is
        # applied only where the broker's log start offset is past the offsets in between
        # (retention deleted them); anywhere else it is a gap like any other (`_gaps`).
        self._refilling: dict[tuple[str, int], int] = {}
        # The batch whose transaction is in the database while the next one is decoded,
        # and how often each partition was sought: records fetched before a seek are stale.
        self._in_flight: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._seeks: collections.Counter[tuple[str, int]] = collections.Counter()
        self.ready = False
        self.in_group = False  # joined or joining its group: assigned or waiting for partitions
        self.assignment: set[TopicPartition] = set()
        self._handed_errors = 0  # in a row, for the backoff

    def stop(self) -> None:
        """Finish the batch in hand, then leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._bootstrap),
            group_id=self._group_id,
            client_id=f"{self._group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._batch_size,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=1024 * 1024,  # interleave partitions during catch-up
            fetch_min_bytes=self._fetch_min_bytes,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            **consumer_options(),
        )
        self._consumer = consumer
        await self._until_coordinator_known()
        async for attempt in retrying(f"{self.name} consumer start", until=self._stopping):
            with attempt:
                await consumer.start()
        if self._partitions is None:
            consumer.subscribe(list(self._topics), listener=_ResumeFromDatabase(self))
        else:
            consumer.assign(self._partitions)
            await self._resume(set(self._partitions))
        self.in_group = True
        try:
            while not self._stopping.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=200, max_records=self._batch_size)
                except KafkaError as exc:
                    await self._poll_again_after(exc)
                    continue
                self._handed_errors = 0
                records = [r for part in batches.values() for r in part]
                if records:
                    # Each partition's records in offset order: its span from both ends, not
                    # from every record (a pass per use was 5% of the projector's CPU).
                    spans = {
                        (tp.topic, tp.partition): (part[0].offset, part[-1].offset + 1)
                        for tp, part in batches.items()
                        if part
                    }
                    await self._pipeline(records, spans)
                else:
                    await self._settle()
                    if time.monotonic() - self._last_position_check > POSITION_CHECK_S:
                        await self._read_again_what_the_database_lost()
        finally:
            try:
                await self._settle()  # finish the batch in hand
            finally:
                self.ready = self.in_group = False
            if self._committing is not None:
                await asyncio.gather(self._committing, return_exceptions=True)
            if self._stopping.is_set():
                leave_group_on_stop(consumer)
            await consumer.stop()
            # A consumer that stops (a read-model version retired by a rebuild's switch)
            # leaves no timestamp behind to look stale.
            with contextlib.suppress(KeyError):
                LAST_APPLIED.remove(self.name)

    async def _poll_again_after(self, exc: KafkaError) -> None:
        """aiokafka hands its group coordinator's errors to the next poll, then goes on by
        itself. An offset fetch answered "coordinator not available" while a broker hands
        `__consumer_offsets` over arrives as a bare, non-retriable KafkaError; raised, it
        would end the consumer and with it the service. Nothing was applied or lost by it
        (positions come from the database), so poll again, backing off; only a refusal
        stops the consumer."""
        if isinstance(exc, REFUSALS):
            raise exc
        self._handed_errors += 1
        KAFKA_ERRORS.labels(self.name).inc()
        log.warning(
            "Kafka error handed to the poll; polling again",
            extra={"consumer": self.name, "error": repr(exc), "in_a_row": self._handed_errors},
        )
        wait = min(HANDED_ERROR_MAX_WAIT_S, 0.1 * 2 ** (self._handed_errors - 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), wait)

    async def _until_coordinator_known(self) -> None:
        """Ask the broker for the group's coordinator until it names one (bounded).

        A broker no group has used yet (a user's first `make run`) creates
        `__consumer_offsets` on the first such request and answers "coordinator not
        available" until its partitions have leaders, which aiokafka's consumer logs at
        error level ("Group Coordinator Request failed") on each retry: an error in
        every clean start's log. Asked here first, quietly, the consumer finds it at
        once. Lowering that aiokafka logger instead would also hide the same line later
        in a run, when it means a broker is gone. Past the bound, or with no broker to
        ask, the consumer starts anyway and aiokafka's own retries (and lines) take over.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COORDINATOR_WAIT_S
        admin = AIOKafkaAdminClient(**client_options(self._bootstrap), client_id=f"{self._group_id}-start")
        try:
            await admin.start()
            while not self._stopping.is_set() and loop.time() < deadline:
                try:
                    await admin.find_coordinator(self._group_id)
                    return
                except KafkaError as exc:
                    if not exc.retriable:
                        return
                await asyncio.sleep(0.1)
        except Exception as exc:
            log.debug("group coordinator not asked before start", extra={"error": repr(exc)})
        finally:
            await admin.close()

    async def _resume(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        stored: dict[TopicPartition, int] = {}
        async for attempt in retrying(f"{self.name} load offsets"):
            with attempt:
                rows = await self._pool.fetch(
                    "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = $1",
                    self.name,
                )
                stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        fresh = []
        for tp in assigned:
            self._seeks[(tp.topic, tp.partition)] += 1
            if tp in stored:
                self._consumer.seek(tp, stored[tp])
            else:
                fresh.append(tp)
        if fresh:
            # One call for all: each call waits for the fetcher's reset (about 0.5 s).
            await self._consumer.seek_to_beginning(*fresh)
        for tp in assigned:
            self._refilling.pop((tp.topic, tp.partition), None)
        for tp in fresh:  # sought to the beginning: retention may have moved it past 0
            self._refilling[(tp.topic, tp.partition)] = 0
        self.assignment = set(assigned)
        self.ready = True
        log.info(
            "partitions assigned",
            extra={"consumer": self.name, "partitions": sorted(f"{t.topic}:{t.partition}" for t in assigned)},
        )

    async def _pipeline(self, records: list[Record], spans: Spans) -> None:
        """Decode this batch while the previous one is in the database, then hand it on.

        Python's work on batch N+1 overlaps PostgreSQL's on batch N. The previous batch
        may seek partitions back (a gap) and a rebalance seeks on assignment: records of
        such a partition fetched before that seek are dropped, as the new position reads
        them again."""
        fetched = {key: self._seeks[key] for key in spans}
        deliveries, dead = self._decode(records)
        await self._settle()
        stale = {key for key, seeks in fetched.items() if self._seeks[key] != seeks}
        if stale:
            records = [r for r in records if (r.topic, r.partition) not in stale]
            deliveries = [d for d in deliveries if (d.topic, d.partition) not in stale]
            dead = [(r, e) for r, e in dead if (r.topic, r.partition) not in stale]
            spans = {key: span for key, span in spans.items() if key not in stale}
        if records:
            self._in_flight = asyncio.create_task(self._process(records, spans, deliveries, dead))

    async def _settle(self) -> None:
        """Wait for the batch in the database; its failure is this consumer's failure."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def process(self, records: Sequence[Record]) -> None:
        """Apply one batch; retried on transient failures, never partially committed."""
        await self._settle()
        await self._process(records, spans_of(records), *self._decode(records))

    async def _process(
        self,
        records: Sequence[Record],
        spans: Spans,
        deliveries: list[Delivery],
        dead: list[tuple[Record, str]],
    ) -> None:
        started = time.perf_counter()
        gaps: dict[tuple[str, int], int] = {}
        log_starts = await self._log_starts_past_refill(spans) if self._refilling else {}
        async for attempt in retrying(f"{self.name} apply batch"):
            with attempt:
                try:
                    gaps = await self._apply(records, spans, deliveries, dead, log_starts, isolate=False)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.warning(
                        "batch failed; applying its messages one by one",
                        extra={"consumer": self.name, "error": repr(exc)},
                    )
                    gaps = await self._apply(records, spans, deliveries, dead, log_starts, isolate=True)
        self._refill(gaps)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        LAST_APPLIED.labels(self.name).set(max(r.timestamp for r in records) / 1000)
        self._on_commit()
        await self._commit_to_kafka({key: span for key, span in spans.items() if key not in gaps})

    @staticmethod
    def _gaps(
        spans: Spans,
        stored: dict[tuple[str, int], int],
        log_starts: dict[tuple[str, int], int],
    ) -> dict[tuple[str, int], int]:
        """Partitions whose batch starts after the stored next offset: records between were
        never applied (the database lost a commit, or was restored), so none of the batch
        may be applied or stored. Maps each to the offset to read again from.

        A partition with no stored offset has applied nothing: its batch must start at 0.
        A batch is excused only where the broker's log start offset is at or past its first
        record: the offsets before it no longer exist (retention; no topic of ours is
        compacted or transactional). Having sought back is no proof: aiokafka also hands
        over records from where it placed a partition itself (Kafka's committed offset, on
        a new assignment, before `_resume` seeks), so such a batch is a gap like any other.
        """
        gaps = {}
        for key, (offset, _) in spans.items():
            expected = stored.get(key, 0)
            if offset <= expected or offset <= log_starts.get(key, -1):
                continue
            gaps[key] = expected
        return gaps

    async def _log_starts_past_refill(self, spans: Spans) -> dict[tuple[str, int], int]:
        """The broker's log start offsets of the partitions whose batch starts past the
        offset they were sought to (`_refilling`): only those may be excused a gap, and only
        by this answer. Asked outside the batch's transaction, and only on that rare path."""
        sought = self._refilling
        return await self._log_starts(
            [k for k, (offset, _) in spans.items() if k in sought and offset > sought[k]]
        )

    async def _log_starts(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Log start offsets from the broker; none where it does not answer, so nothing is
        excused then (the batch is dropped and read again, and asked about again)."""
        if not keys or self._consumer is None:
            return {}
        try:
            starts = await self._consumer.beginning_offsets([TopicPartition(t, p) for t, p in keys])
        except KafkaError as exc:
            log.warning(
                "log start offsets not known; a batch past a refill is read again",
                extra={"consumer": self.name, "error": repr(exc)},
            )
            return {}
        return {(tp.topic, tp.partition): offset for tp, offset in starts.items()}

    async def _read_again_what_the_database_lost(self) -> None:
        """When idle, every record read has been applied, so each assigned partition's
        position equals its stored next offset. A position past it means the database
        lost committed batches of a partition that gets no new records (a new record
        would show the gap too); read them again now rather than at the next record."""
        self._last_position_check = time.monotonic()
        if self._consumer is None or not self.assignment:
            return
        try:
            rows = await self._pool.fetch(
                "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = $1", self.name
            )
        except Exception as exc:
            if is_transient(exc):
                return
            raise
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        behind = {}
        sought_back: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment():
                key = (tp.topic, tp.partition)
                expected = stored.get(key)
                if expected is None:
                    continue  # never applied: its first batch shows where it starts (`_gaps`)
                position = await self._consumer.position(tp)
                if position <= expected:
                    continue
                if self._refilling.get(key) == expected:
                    sought_back[key] = position  # read again only what the broker still holds
                else:
                    behind[key] = expected
        except IllegalStateError:  # a rebalance took the partition meanwhile; it resumes from the database
            return
        if sought_back:
            # Sought back already and Kafka placed the partition further on: the offsets in
            # between are gone only where the log now starts at or past that position.
            starts = await self._log_starts(list(sought_back))
            for key, position in sought_back.items():
                if starts.get(key, -1) < position:
                    behind[key] = stored[key]
        self._refill(behind)

    def _refill(self, gaps: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in gaps.items():
            log.warning(
                "records missing between the stored offset and the batch; reading them again",
                extra={"consumer": self.name, "topic": topic, "partition": partition, "offset": offset},
            )
            GAPS.labels(self.name).inc()
            self._seeks[(topic, partition)] += 1
            self._refilling[(topic, partition)] = offset
            if self._consumer is not None:
                self._consumer.seek(TopicPartition(topic, partition), offset)

    def _decode(self, records: Sequence[Record]) -> tuple[list[Delivery], list[tuple[Record, str]]]:
        deliveries: list[Delivery] = []
        dead: list[tuple[Record, str]] = []
        per_topic = collections.Counter(r.topic for r in records)
        for topic, count in per_topic.items():  # per batch: a labelled metric costs µs per call
            CONSUMED.labels(self.name, topic).inc(count)
        validators = self._validators
        add = deliveries.append
        traced = tracing.ENABLED
        for record in records:
            try:
                message = validators[record.topic](record.value or b"")
            except ValidationError as exc:
                dead.append((record, _describe(exc)))
                continue
            headers = record.headers if traced else ()
            add(Delivery(record.topic, record.partition, record.offset, message, headers))
        return deliveries, dead

    async def _apply(
        self,
        records: Sequence[Record],
        spans: Spans,
        deliveries: list[Delivery],
        dead: list[tuple[Record, str]],
        log_starts: dict[tuple[str, int], int],
        *,
        isolate: bool,
    ) -> dict[tuple[str, int], int]:
        """Apply the batch in one transaction; returns the partitions left out for a gap.
        `spans`: each partition's first and next offsets in the batch; `log_starts`: the broker's log
        start offsets known for partitions that may be excused a gap (`_gaps`)."""
        batch: BatchTrace | None = None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                applied_up_to = await self._lock_offsets(conn, spans)
                gaps = self._gaps(spans, applied_up_to, log_starts)
                if gaps:
                    records = [r for r in records if (r.topic, r.partition) not in gaps]
                    deliveries = [d for d in deliveries if (d.topic, d.partition) not in gaps]
                    dead = [(r, e) for r, e in dead if (r.topic, r.partition) not in gaps]
                    spans = {key: span for key, span in spans.items() if key not in gaps}

                def unseen(topic: str, partition: int, offset: int) -> bool:
                    return offset >= applied_up_to.get((topic, partition), -1)

                # Only a batch read again (a rebalance, a retry) starts below a stored offset.
                replayed = any(first < applied_up_to.get(key, -1) for key, (first, _) in spans.items())
                fresh = (
                    [d for d in deliveries if unseen(d.topic, d.partition, d.offset)]
                    if replayed
                    else deliveries
                )
                outbox = Outbox(self._registry)
                for record, error in dead:
                    if unseen(record.topic, record.partition, record.offset):
                        self._dead_letter(outbox, record, error)
                if isolate:
                    batch = self._traced(fresh)
                    with applying(batch):
                        await self._apply_one_by_one(conn, fresh, records, outbox, batch)
                else:
                    if self._dedupe:
                        fresh = await self._first_sightings(conn, fresh)
                    if fresh:
                        batch = self._traced(fresh)
                        with applying(batch):
                            await self._handle(fresh, Transaction(conn, outbox))
                    APPLIED.labels(self.name).inc(len(fresh))
                if spans:
                    await self._store_offsets(conn, spans)
                letters = [d for m in outbox.messages if (d := described(m)) is not None]
                await outbox.write(conn)
        except BaseException as exc:
            if batch is not None:
                batch.failed(exc)
            raise
        finally:
            if batch is not None:
                batch.end()
        for key in spans:
            self._refilling.pop(key, None)
        self._tell_dead_letters(letters, deliveries)
        return gaps

    def _tell_dead_letters(
        self, letters: list[tuple[Position, dict[str, object]]], deliveries: list[Delivery]
    ) -> None:
        """One warning line and one count per dead letter, once its transaction committed
        (a batch retried after a transient failure would have told it twice), whoever made
        it: the block (undecodable, or a handler that raised) or a handler's own reject."""
        if not letters:
            return
        decoded = {Position(d.topic, d.partition, d.offset): d.message for d in deliveries}
        for source, fields in letters:
            DEAD_LETTERS.labels(self.name, source.topic).inc()
            message = decoded.get(source)
            if message is not None:
                fields |= {"event_id": str(message.event_id), "correlation_id": str(message.correlation_id)}
            log.warning("message dead-lettered", extra={"consumer": self.name, **fields})

    async def _apply_one_by_one(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        records: Sequence[Record],
        outbox: Outbox,
        batch: BatchTrace | None = None,
    ) -> None:
        by_position = {(r.topic, r.partition, r.offset): r for r in records}
        for delivery in deliveries:
            own = Outbox(self._registry)
            try:
                async with conn.transaction():
                    if not self._dedupe or await self._first_sightings(conn, [delivery]):
                        await self._handle([delivery], Transaction(conn, own))
                        APPLIED.labels(self.name).inc()
            except Exception as exc:
                if is_transient(exc):
                    raise
                record = by_position[(delivery.topic, delivery.partition, delivery.offset)]
                self._dead_letter(outbox, record, f"{type(exc).__name__}: {exc}")
                if batch is not None:
                    batch.failed(exc, delivery.message.event_id)
                continue
            outbox.extend(own)

    def _traced(self, deliveries: list[Delivery]) -> BatchTrace | None:
        if not tracing.ENABLED or not deliveries:
            return None
        return BatchTrace(self.name, self._group_id, deliveries)

    def _dead_letter(self, outbox: Outbox, record: Record, error: str) -> None:
        outbox.add(
            dead_letter(
                Position(record.topic, record.partition, record.offset),
                record.key,
                record.value,
                service=self.service,
                error=error,
            )
        )

    async def _lock_offsets(self, conn: asyncpg.Connection, spans: Spans) -> dict[tuple[str, int], int]:
        """Stored next offsets of the batch's partitions, locked against a zombie consumer."""
        partitions = sorted(spans)
        rows = await conn.fetch(
            """
            SELECT topic, partition, next_offset FROM consumer_offsets
            WHERE consumer = $1
              AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
            FOR UPDATE
            """,
            self.name,
            [t for t, _ in partitions],
            [p for _, p in partitions],
        )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def _store_offsets(self, conn: asyncpg.Connection, spans: Spans) -> None:
        next_offsets = {key: end for key, (_, end) in spans.items()}
        await conn.execute(
            """
            INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)
            SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[])
            ON CONFLICT (consumer, topic, partition) DO UPDATE
               SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset),
                   updated_at = now()
            """,
            self.name,
            [t for t, _ in next_offsets],
            [p for _, p in next_offsets],
            list(next_offsets.values()),
        )

    async def _first_sightings(self, conn: asyncpg.Connection, deliveries: list[Delivery]) -> list[Delivery]:
        """Drop messages whose event_id this consumer applied before (dedupe key)."""
        if not deliveries:
            return []
        new_ids = {
            row["event_id"]
            for row in await conn.fetch(
                """
                INSERT INTO processed_events (consumer, event_id)
                SELECT $1, unnest($2::uuid[])
                ON CONFLICT DO NOTHING
                RETURNING event_id
                """,
                self.name,
                [d.message.event_id for d in deliveries],
            )
        }
        fresh = []
        for d in deliveries:
            if d.message.event_id in new_ids:
                new_ids.discard(d.message.event_id)  # a repeat inside the batch counts once
                fresh.append(d)
        DUPLICATES.labels(self.name).inc(len(deliveries) - len(fresh))
        return fresh

    async def _commit_to_kafka(self, spans: Spans) -> None:
        """Mirror progress to Kafka for lag tooling; the database stays the truth.

        In the background, one at a time: while the group's coordinator is being moved (its
        broker lost, or shut down in a rolling restart) a commit waits for the new one, and
        the batch loop waited with it, up to KAFKA_COMMIT_TIMEOUT_S, where it now goes on."""
        if self._consumer is None or time.monotonic() - self._last_kafka_commit < 1.0:
            return
        if self._committing is not None and not self._committing.done():
            return
        self._last_kafka_commit = time.monotonic()
        offsets = {TopicPartition(topic, partition): end for (topic, partition), (_, end) in spans.items()}
        self._committing = asyncio.create_task(self._mirror(self._consumer, offsets))

    @staticmethod
    async def _mirror(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            # Bounded: aiokafka retries a commit while the coordinator is unknown.
            await asyncio.wait_for(consumer.commit(offsets), KAFKA_COMMIT_TIMEOUT_S)
        except Exception as exc:  # a rebalance in progress; the next batch commits again
            log.debug("kafka offset commit skipped", extra={"error": repr(exc)})


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "invalid message: " + "; ".join(parts)
