"""Benchmark: the status projector applying `invoices` + `payments.events` to PostgreSQL.

Produces N events (default 1,000,000: 200 accounts x 1,000 invoices, each invoice
synced, registered, payment requested, checkout opened, payment succeeded) to
prefixed topics, then measures in the same run:

- `projector.raw_consume`: events/s a bare aiokafka consumer reads from the two topics;
- `projector.throughput`: events/s the projection (TransactionalConsumer + batch
  handler, exactly-once into PostgreSQL) applies from offset 0 to the end;
- `projector.rebuild_s`: seconds `status-projector-ops rebuild` takes for all N events
  (new version, catch-up, atomic switch), scaled to 1,000,000 events if N differs;
- `projector.api_p99_ms`: p99 latency of the HTTP API (a real uvicorn process) for an
  account with 1,000 invoices: list pages with cursors, filters, one invoice, summary.

    .venv/bin/python bench/bench_status_projector.py [--events 1000000] [--profile FILE]

Needs PAYMENTS_KAFKA_BOOTSTRAP and PAYMENTS_DATABASE_URL (`. .run/env`). Not a test:
it measures, reports where the time goes, and removes its topics and database.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

from results import record

from payments_shared.database import open_pool
from payments_shared.service import collect_garbage_less_often
from payments_shared.topics import Topic, TopicRegistry, ensure_topics
from status_projector import ops
from status_projector.adapters import postgres as store
from status_projector.adapters.postgres import SCHEMA, VersionTables, install
from status_projector.projection import (
    input_topics,
    kafka_offsets,
    projection_consumer,
    run_until,
)
from system import free_port

ROOT = Path(__file__).resolve().parents[1]
INVOICES_PER_ACCOUNT = 1000
EVENTS_PER_INVOICE = 5
BASE = datetime(2025, 1, 1, tzinfo=UTC)


def _envelope(kind: str, account: str, at: datetime, payload: dict[str, Any]) -> bytes:
    event_id = str(uuid.uuid4())
    return json.dumps(
        {
            "event_id": event_id,
            "type": kind,
            "schema_version": 1,
            "occurred_at": at.isoformat(),
            "producer": "bench",
            "correlation_id": event_id,
            "causation_id": None,
            "account_id": account,
            "payload": payload,
        },
        separators=(",", ":"),
    ).encode()


def events(n: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(invoices, payments.events) as (key, value), in per-account order."""
    invoices: list[tuple[bytes, bytes]] = []
    payments: list[tuple[bytes, bytes]] = []
    count = n // EVENTS_PER_INVOICE
    for i in range(count):
        account = f"ACC-{i // INVOICES_PER_ACCOUNT:05d}"
        key = account.encode()
        number = f"INV-{i:08d}"
        at = BASE + timedelta(seconds=i)
        total = {"amount_minor": 10_000 + i % 997, "currency": "USD"}
        due = (date(2025, 1, 1) + timedelta(days=i % 365)).isoformat()
        invoices.append(
            (
                key,
                _envelope(
                    "invoice.synced",
                    account,
                    at,
                    {
                        "invoice_number": number,
                        "erp_version": 1,
                        "order_number": f"SO-{i}",
                        "po_number": f"PO-{i}",
                        "invoice_date": "2025-01-01",
                        "due_date": due,
                        "total": total,
                        "open_amount": total,
                        "erp_status": "open",
                        "billing_country": "US",
                        "posted_payments": [],
                    },
                ),
            )
        )
        invoices.append(
            (
                key,
                _envelope(
                    "invoice.registered",
                    account,
                    at + timedelta(milliseconds=1),
                    {
                        "invoice_number": number,
                        "erp_version": 1,
                        "provider_invoice_id": f"prov-{i}",
                        "amount": total,
                    },
                ),
            )
        )
        pay = str(uuid.uuid4())
        allocation = [{"invoice_number": number, "amount": total}]
        payments.append(
            (
                key,
                _envelope(
                    "payment.requested",
                    account,
                    at + timedelta(milliseconds=2),
                    {
                        "payment_id": pay,
                        "idempotency_key": f"k-{i}",
                        "scope": "invoice",
                        "method": "card",
                        "allocations": allocation,
                        "total": total,
                    },
                ),
            )
        )
        payments.append(
            (
                key,
                _envelope(
                    "payment.checkout_opened",
                    account,
                    at + timedelta(milliseconds=3),
                    {
                        "payment_id": pay,
                        "checkout_id": f"co-{i}",
                        "checkout_url": "http://127.0.0.1:8040/c",
                        "expires_at": (at + timedelta(hours=1)).isoformat(),
                    },
                ),
            )
        )
        # Most invoices end paid; some stay pending so the API's filters have work.
        if i % 10:
            payments.append(
                (
                    key,
                    _envelope(
                        "payment.succeeded",
                        account,
                        at + timedelta(milliseconds=4),
                        {"payment_id": pay, "amount": total, "allocations": allocation},
                    ),
                )
            )
        else:
            payments.append(
                (
                    key,
                    _envelope(
                        "payment.failed",
                        account,
                        at + timedelta(milliseconds=4),
                        {"payment_id": pay, "reason_code": "payment_failed", "message": "declined"},
                    ),
                )
            )
    return invoices, payments


async def produce(bootstrap: str, topic: str, partitions: int, records: list[tuple[bytes, bytes]]) -> None:
    """Batches built per partition (the keyed partition a normal producer would pick)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for key, value in records:
            by_partition[(murmur2(key) & 0x7FFFFFFF) % partitions].append((key, value))
        pending = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            if len(pending) > 50:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topics: list[Topic]) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        total = sum(ends.values())
        seen = 0
        started = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            seen += sum(len(v) for v in batches.values())
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


class Timings:
    """Time spent in the read model's SQL, measured by wrapping the store's methods."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, cls: type, names: list[str]) -> None:
        for name in names:
            original = getattr(cls, name)

            def timed(original: Callable[..., Awaitable[Any]] = original, name: str = name):  # type: ignore[no-untyped-def]
                async def call(*args: Any, **kwargs: Any) -> Any:
                    started = time.perf_counter()
                    try:
                        return await original(*args, **kwargs)
                    finally:
                        self.seconds[name] += time.perf_counter() - started

                return call

            setattr(cls, name, timed())


API_SERVER = """
import asyncio, sys, uvicorn
from payments_shared.database import open_pool
from payments_shared.topics import TopicRegistry
from status_projector.adapters.postgres import SCHEMA
from status_projector.domain.access import MerchantKeys, PortalKeys, digest_of
from status_projector.entrypoints.http import build_app

async def main():
    pool = await open_pool(sys.argv[1], SCHEMA, size=4)
    keys = PortalKeys([MerchantKeys("bench", frozenset([sys.argv[4]]), (digest_of(sys.argv[5]),))])
    app = build_app(pool, TopicRegistry(sys.argv[2]), keys, provider_configured=True)
    await uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[3]),
                                        log_level="warning", access_log=False)).serve()
try:
    import uvloop; uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


async def api_latencies(dsn: str, prefix: str, account: str, requests: int) -> list[float]:
    port = free_port()
    key = "pk_bench_" + uuid.uuid4().hex
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", API_SERVER, dsn, prefix, str(port), account, key
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=10, headers={"authorization": f"Bearer {key}"}
        ) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/docs")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("API server did not start")
                await asyncio.sleep(0.1)
            first = (await client.get(f"/v1/accounts/{account}/invoices", params={"limit": 50})).json()
            numbers = [i["invoice_number"] for i in first["items"]]
            cursors = [None]
            cursor = first["next_cursor"]
            while cursor and len(cursors) < 20:
                cursors.append(cursor)
                cursor = (
                    await client.get(f"/v1/accounts/{account}/invoices", params={"cursor": cursor})
                ).json()["next_cursor"]
            shapes: list[tuple[str, dict[str, Any]]] = [
                (f"/v1/accounts/{account}/invoices", {"limit": 50}),
                (f"/v1/accounts/{account}/invoices", {"limit": 50, "sort": "-due_date"}),
                (f"/v1/accounts/{account}/invoices", {"limit": 50, "pay_status": "pending"}),
                (f"/v1/accounts/{account}/summary", {}),
            ]
            latencies = []
            rng = random.Random(7)
            for n in range(requests):
                kind = n % 6
                if kind < 4:
                    path, params = shapes[kind]
                elif kind == 4:
                    path, params = f"/v1/accounts/{account}/invoices/{rng.choice(numbers)}", {}
                else:
                    c = rng.choice(cursors)
                    path, params = f"/v1/accounts/{account}/invoices", ({"cursor": c} if c else {})
                started = time.perf_counter()
                response = await client.get(path, params=params)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
            return latencies
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


def _dsn_with(dsn: str, database: str) -> str:
    return dsn.rpartition("/")[0] + "/" + database


async def run(n: int, profile: str | None) -> dict[str, float]:
    bootstrap = os.environ["PAYMENTS_KAFKA_BOOTSTRAP"]
    admin_dsn = os.environ["PAYMENTS_DATABASE_URL"]
    run_id = uuid.uuid4().hex[:8]
    registry = TopicRegistry(f"bench{run_id}.")
    database = f"bench_projector_{run_id}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    dsn = _dsn_with(admin_dsn, database)
    results: dict[str, float] = {}
    try:
        await ensure_topics(bootstrap, registry)
        t = time.perf_counter()
        invoices, payments = events(n)
        made = len(invoices) + len(payments)
        print(f"generated {made:,} events in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        await produce(bootstrap, registry.invoices.name, registry.invoices.partitions, invoices)
        await produce(bootstrap, registry.payments_events.name, registry.payments_events.partitions, payments)
        total = len(invoices) + len(payments)
        del invoices, payments
        collect_garbage_less_often()  # as the service does at start-up
        print(f"produced in {time.perf_counter() - t:.1f} s", flush=True)

        seen, seconds = await raw_consume(bootstrap, input_topics(registry))
        results["raw_consume"] = seen / seconds
        print(
            f"raw aiokafka consume: {seen:,} in {seconds:.1f} s = {seen / seconds:,.0f} ev/s",
            flush=True,
        )

        pool = await open_pool(dsn, SCHEMA, size=6, install=install)  # as the service
        timings = Timings()
        timings.wrap(
            store.ReadModelStore,
            [
                "invoices",
                "payments",
                "parked_waiting_for",
                "save_invoices",
                "save_payments",
                "park",
                "unpark",
                "note_progress",
            ],
        )
        try:
            tables = VersionTables(1)
            starts, ends = await kafka_offsets(bootstrap, input_topics(registry))
            consumer = projection_consumer(
                name=tables.consumer,
                tables=tables,
                registry=registry,
                pool=pool,
                bootstrap=bootstrap,
                batch_size=int(os.environ.get("STATUS_PROJECTOR_BATCH_SIZE", "2000")),
            )
            handler = consumer._handle
            handler_seconds = 0.0
            handler_cpu = 0.0

            async def timed_handler(deliveries, tx):  # type: ignore[no-untyped-def]
                nonlocal handler_seconds, handler_cpu
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    await handler(deliveries, tx)
                finally:
                    handler_seconds += time.perf_counter() - started
                    handler_cpu += time.process_time() - cpu

            consumer._handle = timed_handler
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            t, cpu = time.perf_counter(), time.process_time()
            await run_until(consumer, pool, starts=starts, ends=ends)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            if profiler:
                profiler.disable()
                profiler.dump_stats(profile)
            results["throughput"] = total / seconds
            sql = sum(timings.seconds.values())
            print(
                f"projection: {total:,} in {seconds:.1f} s = {total / seconds:,.0f} ev/s",
                flush=True,
            )
            print(
                f"  where the time goes: batch handler {handler_seconds:.1f} s "
                f"(read-model SQL {sql:.1f} s: "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(timings.seconds.items(), key=lambda kv: -kv[1]))
                + f"; python {handler_seconds - sql:.1f} s); outside the handler "
                f"(fetch, decode, dedupe, offsets, commit) {seconds - handler_seconds:.1f} s",
                flush=True,
            )
            per = 100_000 / total
            print(
                f"  CPU s per 100k events: projector process {cpu * per:.2f} "
                f"(batch handler {handler_cpu * per:.2f}, incl. what ran while it awaited SQL); "
                f"read-model SQL wall {sql * per:.2f}",
                flush=True,
            )
            results["cpu_per_100k"] = cpu * per
            results["handler_cpu_per_100k"] = handler_cpu * per
            async with pool.acquire() as conn:
                parked = await conn.fetchval(f"SELECT count(*) FROM {tables.parked}")
                statuses = await conn.fetch(f"SELECT pay_status, count(*) FROM {tables.invoices} GROUP BY 1")
            print(
                f"  parked left: {parked}; statuses: {dict((r[0], r[1]) for r in statuses)}",
                flush=True,
            )

            timings.seconds.clear()
            ctx = ops.Projecting(
                pool,
                registry,
                bootstrap,
                batch_size=int(os.environ.get("STATUS_PROJECTOR_BATCH_SIZE", "2000")),
                rebuild_batch_size=int(os.environ.get("STATUS_PROJECTOR_REBUILD_BATCH_SIZE", "10000")),
            )
            cpu = time.process_time()
            result = await ops.rebuild(ctx)
            print(
                f"  rebuild CPU s per 100k events: {(time.process_time() - cpu) * 100_000 / total:.2f}",
                flush=True,
            )
            results["rebuild_s"] = result.seconds * (1_000_000 / total)
            print(
                f"rebuild: {total:,} events into v{result.version} in {result.seconds:.1f} s",
                flush=True,
            )
            async with pool.acquire() as conn:
                a = await conn.fetch("SELECT * FROM invoices_v1 EXCEPT SELECT * FROM invoices_v2")
                b = await conn.fetch("SELECT * FROM invoices_v2 EXCEPT SELECT * FROM invoices_v1")
            print(f"  rebuild rows differ from live projection: {len(a) + len(b)}", flush=True)

            latencies = await api_latencies(dsn, registry.prefix, "ACC-00000", 3000)
            latencies.sort()
            results["api_p99_ms"] = latencies[int(len(latencies) * 0.99) - 1]
            print(
                f"API: {len(latencies)} requests, p50 {statistics.median(latencies):.2f} ms, "
                f"p99 {results['api_p99_ms']:.2f} ms, max {latencies[-1]:.2f} ms",
                flush=True,
            )
        finally:
            await pool.close()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        kafka = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await kafka.start()
        try:
            await kafka.delete_topics(list(registry.desired()))
        finally:
            await kafka.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profile", default=None, help="write a cProfile of the projection here")
    parser.add_argument("--no-record", action="store_true", help="print only (trial runs)")
    args = parser.parse_args()
    results = asyncio.run(run(args.events, args.profile))
    if args.no_record:
        print(results)
        return
    context = {"events": args.events, "cores": os.cpu_count()}
    record("projector.throughput", results["throughput"], "events/s", **context)
    record("projector.raw_consume", results["raw_consume"], "events/s", **context)
    record("projector.rebuild_s", results["rebuild_s"], "s", **context, scaled_to=1_000_000)
    record(
        "projector.api_p99_ms",
        results["api_p99_ms"],
        "ms",
        **context,
        account_invoices=INVOICES_PER_ACCOUNT,
    )


if __name__ == "__main__":
    main()
