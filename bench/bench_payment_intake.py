"""Benchmark: pay commands per second through payment-intake, and latency at a steady rate.

Starts the sandbox provider and `payment-intake` as OS processes on a fresh database
and prefixed topics, feeds invoice facts for many accounts, then:

1. throughput: produces N pay commands at once to `payments.commands` and measures,
   from the first send until the command's first outcome (`payment.requested` /
   `payment.rejected`) on `payments.events` for every command, commands per second.
   Each invoice of the throughput set gets a first command (requested: a payment and
   a checkout to open) and repeats with new keys (rejected: already pending), so
   both paths are measured;
2. latency: once every checkout of phase 1 is open (so ~`invoices` payments are open,
   as in a busy portal), sends commands at a steady R per second: a warm-up of W
   seconds, not counted, then S seconds measured, send -> first outcome per command,
   p50 and p99. Half of the commands go to invoices nobody paid yet (requested, and
   the checkout opener calls the provider meanwhile), half to pending ones (rejected).

Both phases also report the service process's CPU seconds per command (psutil), the
figure to judge a change by on a shared machine.

    .venv/bin/python bench/bench_payment_intake.py [--commands 20000] [--rate 500]
        [--seconds 10] [--warmup 3] [--runs 3] [--profile FILE] [--no-record]

Needs PAYMENTS_KAFKA_BOOTSTRAP and PAYMENTS_DATABASE_URL (`. .run/env`). Run it under
`flock .run/bench.lock`. Writes `payment_intake.throughput` (commands/s),
`payment_intake.latency_p50_ms`, `payment_intake.latency_p99_ms` and
`payment_intake.cpu_us_per_command` (throughput phase) via results.record. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from results import median, record

from payments_shared.contracts.invoices import (
    InvoiceRegistered,
    InvoiceRegisteredPayload,
    InvoiceSynced,
    InvoiceSyncedPayload,
)
from payments_shared.contracts.payments import (
    BillingAddress,
    GuestCheckout,
    PayInvoice,
    PayInvoicePayload,
)
from payments_shared.domain.money import Money
from payments_shared.topics import TopicRegistry, ensure_topics
from system import free_port

BIN = Path(sys.executable).parent
METHOD = GuestCheckout(
    billing_address=BillingAddress(
        email="ap@example.com",
        street="1 Main St",
        country="US",
        postal_code="10001",
        phone_country_code="+1",
        phone_number="212 555 0100",
    ),
    name_on_card="Pat Payer",
)


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def invoice_facts(accounts: int, per_account: int) -> list[tuple[str, str]]:
    return [(f"B-{a}", f"INV-{a}-{i}") for a in range(accounts) for i in range(per_account)]


def pay_command(account: str, number: str) -> PayInvoice:
    return PayInvoice.originating(
        producer="bench",
        account_id=account,
        payload=PayInvoicePayload(idempotency_key=str(uuid.uuid4()), invoice_number=number, method=METHOD),
    )


class Stack:
    def __init__(
        self, bootstrap: str, database: str, registry: TopicRegistry, logs: Path, profile: str | None = None
    ) -> None:
        self.intake_port, self.sandbox_port = free_port(), free_port()
        self.database = database
        env = {
            **os.environ,
            "PAYMENTS_KAFKA_BOOTSTRAP": bootstrap,
            "PAYMENTS_DATABASE_URL": database,
            "PAYMENTS_TOPIC_PREFIX": registry.prefix,
            "PAYMENTS_LOG_LEVEL": "WARNING",
            "PAYMENTS_SANDBOX": "1",  # the sandbox provider's published webhook secret
        }
        self.sandbox = subprocess.Popen(
            [str(BIN / "sandbox-provider")],
            env={
                **env,
                "SANDBOX_PROVIDER_PORT": str(self.sandbox_port),
                "SANDBOX_PROVIDER_PUBLIC_URL": f"http://127.0.0.1:{self.sandbox_port}",
                "SANDBOX_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{self.intake_port}/callbacks/provider",
            },
            stdout=subprocess.DEVNULL,
            stderr=(logs / "sandbox.log").open("wb"),
        )
        command = [str(BIN / "payment-intake")]
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, *command]
        self.intake = subprocess.Popen(
            command,
            env={
                **env,
                "PAYMENT_INTAKE_HTTP_PORT": str(self.intake_port),
                "PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{self.sandbox_port}",
            },
            stdout=subprocess.DEVNULL,
            stderr=(logs / "intake.log").open("wb"),
        )

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                try:
                    if (
                        await http.get(f"http://127.0.0.1:{self.intake_port}/health/ready")
                    ).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if self.intake.poll() is not None:
                    raise RuntimeError("payment-intake exited; see its log")
                await asyncio.sleep(0.2)
        raise TimeoutError("payment-intake not ready")

    def stop(self) -> None:
        for proc in (self.intake, self.sandbox):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.intake, self.sandbox):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Answers:
    """Reads payments.events and stamps the arrival time of each command's answer."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self.types: dict[str, str] = {}
        self.opened = 0
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", group_id=None, fetch_max_wait_ms=5
        )

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.seek_to_end()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record_ in self._consumer:
            now = time.perf_counter()
            event = json.loads(record_.value)
            if event["type"] == "payment.checkout_opened":
                self.opened += 1
            if event["type"] in ("payment.requested", "payment.rejected"):
                self.arrived.setdefault(event["causation_id"], now)
                self.types.setdefault(event["causation_id"], event["type"])

    async def wait_for(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(i not in self.arrived for i in ids):
            if time.monotonic() > deadline:
                missing = sum(i not in self.arrived for i in ids)
                raise TimeoutError(f"{missing} commands unanswered")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def seed(
    bootstrap: str, registry: TopicRegistry, sandbox_port: int, invoices: list[tuple[str, str]]
) -> None:
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=32)) as http:
        gate = asyncio.Semaphore(32)

        async def register(acc: str, number: str) -> None:
            async with gate:
                await http.post(
                    f"http://127.0.0.1:{sandbox_port}/v1/invoices",
                    json={
                        "account_id": acc,
                        "invoice_number": number,
                        "amount_minor": 10_000,
                        "currency": "USD",
                    },
                )

        await asyncio.gather(*(register(a, n) for a, n in invoices))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for acc, number in invoices:
            for message in (
                InvoiceSynced.originating(
                    producer="bench",
                    account_id=acc,
                    payload=InvoiceSyncedPayload(
                        invoice_number=number,
                        erp_version=1,
                        order_number=None,
                        po_number=None,
                        invoice_date=date(2026, 4, 1),
                        due_date=date(2026, 5, 1),
                        total=usd(10_000),
                        open_amount=usd(10_000),
                        erp_status="open",
                        billing_country="US",
                        posted_payments=[],
                    ),
                ),
                InvoiceRegistered.originating(
                    producer="bench",
                    account_id=acc,
                    payload=InvoiceRegisteredPayload(
                        invoice_number=number, erp_version=1, provider_invoice_id="x", amount=usd(10_000)
                    ),
                ),
            ):
                await producer.send(
                    registry.invoices.name, message.model_dump_json().encode(), key=acc.encode()
                )
        await producer.flush()
    finally:
        await producer.stop()


async def facts_applied(database: str, count: int, timeout: float = 300) -> None:
    """Every invoice synced and registered in payment-intake's own copy."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(database)
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                if (
                    await conn.fetchval(
                        "SELECT count(*) FROM payment_intake.invoices WHERE synced AND registered"
                    )
                    >= count
                ):
                    return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise TimeoutError("invoice facts not applied")


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def throughput(
    bootstrap: str, registry: TopicRegistry, answers: Answers, invoices, n: int, process: psutil.Process
) -> tuple[float, float]:
    commands = [pay_command(*invoices[i % len(invoices)]) for i in range(n)]
    encoded = [(c.key(), c.model_dump_json().encode()) for c in commands]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        cpu_before = cpu_s(process)
        started = time.perf_counter()
        for key, value in encoded:
            await producer.send(registry.payments_commands.name, value, key=key)
        await producer.flush()
        ids = [str(c.event_id) for c in commands]
        await answers.wait_for(ids, timeout=600)
        last = max(answers.arrived[i] for i in ids)
        cpu = cpu_s(process) - cpu_before
    finally:
        await producer.stop()
    requested = sum(answers.types[str(c.event_id)] == "payment.requested" for c in commands)
    print(
        f"  {n} commands ({requested} requested) in {last - started:.2f}s:"
        f" {n / (last - started):.0f}/s, {cpu / n * 1e6:.0f} us CPU/command",
        flush=True,
    )
    return n / (last - started), cpu / n


async def latency(
    bootstrap: str,
    registry: TopicRegistry,
    answers: Answers,
    pending: list[tuple[str, str]],
    fresh: list[tuple[str, str]],
    args: argparse.Namespace,
    process: psutil.Process,
) -> tuple[float, float, float]:
    """Steady rate: even commands pay a fresh invoice, odd ones a pending one."""
    rate = args.rate
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    warm = int(rate * args.warmup)
    total = warm + int(rate * args.seconds)
    try:
        start = time.perf_counter()
        cpu_before = 0.0
        for i in range(total):
            if i == warm:
                cpu_before = cpu_s(process)
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            target = fresh[i // 2] if i % 2 == 0 else pending[(i * 7919) % len(pending)]
            command = pay_command(*target)
            if i >= warm:
                sent[str(command.event_id)] = time.perf_counter()
            await producer.send(
                registry.payments_commands.name, command.model_dump_json().encode(), key=command.key()
            )
        await producer.flush()
        await answers.wait_for(list(sent), timeout=120)
        cpu = cpu_s(process) - cpu_before
    finally:
        await producer.stop()
    latencies = sorted((answers.arrived[i] - t) * 1000 for i, t in sent.items())
    requested = sum(answers.types[i] == "payment.requested" for i in sent)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"  {len(latencies)} commands ({requested} requested) at {rate}/s after {args.warmup}s warm-up:"
        f" p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms,"
        f" {cpu / len(sent) * 1e6:.0f} us CPU/command (incl. checkouts)",
        flush=True,
    )
    return p50, p99, cpu / len(sent)


async def one_run(args: argparse.Namespace, bootstrap: str, dsn: str) -> tuple[float, float, float, float]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    registry = TopicRegistry(prefix=f"b{uuid.uuid4().hex[:8]}.")
    await ensure_topics(bootstrap, registry)
    logs = Path(tempfile.gettempdir()) / name
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(bootstrap, f"{dsn.rpartition('/')[0]}/{name}", registry, logs, args.profile)
    answers = Answers(bootstrap, registry.payments_events.name)
    try:
        await stack.ready()
        process = psutil.Process(stack.intake.pid)
        invoices = invoice_facts(args.accounts, args.per_account)
        fresh_needed = (int(args.rate * (args.warmup + args.seconds)) + 1) // 2 + 1
        fresh = [(f"F-{i % args.accounts}", f"FRESH-{i}") for i in range(fresh_needed)]
        await seed(bootstrap, registry, stack.sandbox_port, invoices + fresh)
        await answers.start()
        await facts_applied(stack.database, len(invoices) + len(fresh))
        await throughput(bootstrap, registry, answers, [fresh[-1]], 1, process)  # warm
        tput, cpu_tput = await throughput(bootstrap, registry, answers, invoices, args.commands, process)
        # Let the checkout opener finish the throughput phase's payments first, so the
        # steady-rate phase measures commands, not a backlog of provider calls.
        wanted = sum(t == "payment.requested" for t in answers.types.values())
        cpu_before, waited = cpu_s(process), time.perf_counter()
        deadline = time.monotonic() + 300
        while answers.opened < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        print(
            f"  {answers.opened} checkouts open after {time.perf_counter() - waited:.1f}s more,"
            f" {cpu_s(process) - cpu_before:.1f} s CPU",
            flush=True,
        )
        p50, p99, _ = await latency(bootstrap, registry, answers, invoices, fresh[:-1], args, process)
        return tput, p50, p99, cpu_tput
    finally:
        await answers.stop()
        stack.stop()
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await client.start()
        try:
            await client.delete_topics(list(registry.desired()))
        except Exception as exc:  # cleanup only
            print(f"  topic cleanup: {exc!r}")
        finally:
            await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--per-account", type=int, default=5)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default=None, help="write a cProfile of payment-intake here")
    parser.add_argument("--no-record", action="store_true", help="print only (while iterating)")
    args = parser.parse_args()
    bootstrap = os.environ.get("PAYMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    dsn = os.environ.get("PAYMENTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/payments")
    results = []
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", flush=True)
        results.append(await one_run(args, bootstrap, dsn))
    if args.no_record:
        return
    context = {"commands": args.commands, "runs": args.runs, "invoices": args.accounts * args.per_account}
    steady = {"rate": args.rate, "seconds": args.seconds, "warmup_s": args.warmup, **context}
    record("payment_intake.throughput", median([r[0] for r in results]), "commands/s", **context)
    record("payment_intake.latency_p50_ms", median([r[1] for r in results]), "ms", **steady)
    record("payment_intake.latency_p99_ms", median([r[2] for r in results]), "ms", **steady)
    record("payment_intake.cpu_us_per_command", median([r[3] for r in results]) * 1e6, "us", **context)


if __name__ == "__main__":
    asyncio.run(main())
