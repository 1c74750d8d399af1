"""Benchmark: ERP documents per second through invoice-sync, with provider registration.

Produces N ERP invoice documents (new invoices, many accounts) to a prefixed
`erp.invoices`, then starts the sandbox provider and `invoice-sync` as OS processes
and measures, from the moment invoice-sync is ready until `invoice.synced` and
`invoice.registered` have been published for every document, how many documents per second went from
`erp.invoices` to `invoices` (synced, registered with the provider, published).
The invoice-sync process's RSS is sampled throughout, and the CPU seconds of
invoice-sync, the sandbox provider, the database's backends and the broker reported.

    .venv/bin/python bench/bench_invoice_sync.py [--documents 100000] [--runs 3] [--profile FILE]

Needs PAYMENTS_KAFKA_BOOTSTRAP and PAYMENTS_DATABASE_URL (`. .run/env`). Writes
`invoice_sync.throughput` (documents/s) and `invoice_sync.peak_rss_mb` via results.record.
Not a test: it measures and reports, and cleans up its topics and database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from results import median, record

from payments_shared.contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted
from payments_shared.topics import TopicRegistry, ensure_topics
from system import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"


def documents(n: int, accounts: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        account = f"ACC-{i % accounts:05d}"
        total = Decimal(1000 + i % 997).scaleb(-2) + 10
        message = ErpInvoiceUpserted.originating(
            producer="erp-bench",
            account_id=account,
            payload=ErpInvoiceDocument(
                invoice_number=f"INV-{i:07d}",
                version=1,
                order_number=f"SO-{i:07d}",
                po_number=f"PO-{i % 5000:05d}",
                invoice_date=date(2026, 11, 1),
                due_date=date(2026, 12, 1),
                currency="USD",
                total=total,
                open_amount=total,
                billing_country="US",
            ),
        )
        out.append((message.key(), message.model_dump_json().encode()))
    return out


async def produce(bootstrap: str, topic: str, docs: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in docs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
            try:
                if (await client.get(url)).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.02)
    raise TimeoutError(url)


async def count_events(bootstrap: str, topic: str, wanted: int, timeout: float) -> float:
    """Read `invoices` (headers only) until `wanted` invoice.synced and `wanted`
    invoice.registered were seen: every document is on `invoices` and registered."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    seen = {b"invoice.synced": 0, b"invoice.registered": 0}
    deadline = time.monotonic() + timeout
    try:
        while min(seen.values()) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {wanted} seen")
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batch.values():
                for r in records:
                    for k, v in r.headers:
                        if k == "type" and v in seen:
                            seen[v] += 1
        return time.monotonic()
    finally:
        await consumer.stop()


async def sample_rss(pid: int, stop: asyncio.Event, peak: list[float], cpu: list[float]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], process.memory_info().rss / 1e6)
            times = process.cpu_times()
            cpu[0] = times.user + times.system
        except psutil.Error:
            return
        await asyncio.sleep(0.1)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def sample_backends(database: str, stop: asyncio.Event, cpu: dict[int, float]) -> None:
    """CPU seconds of the PostgreSQL backends serving the benchmark's database (the
    database runs on the same two cores: its share of the work is part of the picture)."""
    while not stop.is_set():
        for process in psutil.process_iter(["name", "cmdline"]):
            try:
                if process.info["name"] == "postgres" and database in " ".join(process.info["cmdline"] or ()):
                    cpu[process.pid] = _cpu(process)
            except psutil.Error:
                continue
        await asyncio.sleep(0.2)


def kafka_cpu() -> float:
    """CPU seconds of the Kafka broker so far (shared with whatever else runs)."""
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if process.info["name"] == "java" and "kafka.Kafka" in (process.info["cmdline"] or ()):
                return _cpu(process)
        except psutil.Error:
            continue
    return 0.0


async def fetch_metrics(port: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    wanted = {}
    for line in text.splitlines():
        m = re.match(r"^(consumer_batch_seconds_(?:sum|count)|outbox_published_total)\{.*\} (\S+)$", line)
        if m:
            wanted[m.group(1)] = wanted.get(m.group(1), 0.0) + float(m.group(2))
    return wanted


async def run_once(n: int, accounts: int, profile: str | None) -> dict[str, float]:
    bootstrap = os.environ.get("PAYMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    admin_dsn = os.environ.get("PAYMENTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/payments")
    tag = uuid.uuid4().hex[:8]
    registry = TopicRegistry(prefix=f"bench{tag}.")
    database = f"bench_invoice_sync_{tag}"
    dsn = f"{admin_dsn.rpartition('/')[0]}/{database}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    await ensure_topics(bootstrap, registry)
    provider_port, service_port = free_port(), free_port()
    env = {
        **os.environ,
        "PAYMENTS_KAFKA_BOOTSTRAP": bootstrap,
        "PAYMENTS_DATABASE_URL": dsn,
        "PAYMENTS_TOPIC_PREFIX": registry.prefix,
        "PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{provider_port}",
        "PAYMENTS_LOG_LEVEL": "WARNING",
        "SANDBOX_PROVIDER_PORT": str(provider_port),
        "INVOICE_SYNC_HTTP_PORT": str(service_port),
    }
    provider = service = None
    try:
        started = time.monotonic()
        docs = documents(n, accounts)
        await produce(bootstrap, registry.erp_invoices.name, docs)
        del docs
        print(f"produced {n} documents in {time.monotonic() - started:.1f}s", flush=True)

        provider = subprocess.Popen([str(BIN / "sandbox-provider")], env=env)
        await wait_http(f"http://127.0.0.1:{provider_port}/health/live", 30, provider)
        command = [str(BIN / "invoice-sync")]
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, str(BIN / "invoice-sync")]
        service = subprocess.Popen(command, env=env)
        stop = asyncio.Event()
        peak, cpu = [0.0], [0.0]
        backends: dict[int, float] = {}
        sampler = asyncio.create_task(sample_rss(service.pid, stop, peak, cpu))
        backend_sampler = asyncio.create_task(sample_backends(database, stop, backends))
        counter = asyncio.create_task(count_events(bootstrap, registry.invoices.name, n, 900))
        t0 = await wait_http(f"http://127.0.0.1:{service_port}/health/ready", 60, service)
        cpu_at_ready = cpu[0]
        provider_at_ready = _cpu(psutil.Process(provider.pid))
        backends_at_ready = sum(backends.values())
        kafka_at_ready = kafka_cpu()
        t1 = await counter
        kafka_at_end = kafka_cpu()
        stop.set()
        await asyncio.gather(sampler, backend_sampler)
        metrics = await fetch_metrics(service_port)
        elapsed = t1 - t0
        result = {
            "throughput": n / elapsed,
            "seconds": elapsed,
            "peak_rss_mb": peak[0],
            "service_cpu_s": cpu[0] - cpu_at_ready,
            "provider_cpu_s": _cpu(psutil.Process(provider.pid)) - provider_at_ready,
            "postgres_cpu_s": sum(backends.values()) - backends_at_ready,
            "kafka_cpu_s": kafka_at_end - kafka_at_ready,
            "consume_batches_s": metrics.get("consumer_batch_seconds_sum", 0.0),
            "consume_batches": metrics.get("consumer_batch_seconds_count", 0.0),
        }
        print(
            f"{n} documents in {elapsed:.1f}s = {result['throughput']:.0f} docs/s; "
            f"peak RSS {peak[0]:.0f} MB; invoice-sync CPU {result['service_cpu_s']:.1f}s "
            f"({result['service_cpu_s'] / n * 1e6:.0f} us/doc), provider CPU "
            f"{result['provider_cpu_s']:.1f}s, PostgreSQL CPU {result['postgres_cpu_s']:.1f}s, "
            f"Kafka CPU {result['kafka_cpu_s']:.1f}s (all users); consumer transactions "
            f"{result['consume_batches_s']:.1f}s in {result['consume_batches']:.0f} batches",
            flush=True,
        )
        return result
    finally:
        for process in (service, provider):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await client.start()
        try:
            await client.delete_topics(list(registry.desired()))
        finally:
            await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default=None, help="write a cProfile of invoice-sync here")
    args = parser.parse_args()
    results = [await run_once(args.documents, args.accounts, args.profile) for _ in range(args.runs)]
    throughput = median([r["throughput"] for r in results])
    peak = max(r["peak_rss_mb"] for r in results)
    context = {
        "documents": args.documents,
        "runs": args.runs,
        "runs_throughput": [round(r["throughput"]) for r in results],
        "service_cpu_s": round(statistics.median(r["service_cpu_s"] for r in results), 1),
        "service_cpu_us_per_document": round(
            statistics.median(r["service_cpu_s"] for r in results) / args.documents * 1e6
        ),
        "provider_cpu_s": round(statistics.median(r["provider_cpu_s"] for r in results), 1),
        "postgres_cpu_s": round(statistics.median(r["postgres_cpu_s"] for r in results), 1),
    }
    record("invoice_sync.throughput", throughput, "documents/s", **context)
    record("invoice_sync.peak_rss_mb", peak, "MB", documents=args.documents, runs=args.runs)


if __name__ == "__main__":
    asyncio.run(main())
