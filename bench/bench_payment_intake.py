"""Figures of payment-intake: commands/s and CPU per command at full speed, p99 at a
steady 500/s.

The sandbox provider and payment-intake run as OS processes on a fresh database and
prefixed topics; invoice facts for many accounts are fed and applied first. Then:

1. throughput: N pay commands produced at once to `payments.commands`; the window runs
   from the first send until each command's first outcome (`payment.requested` /
   `payment.rejected`) is on `payments.events`. Each invoice gets a first command
   (requested: a payment and a checkout to open) and repeats with new keys (rejected:
   already pending), so both paths are measured;
2. latency: once every checkout of phase 1 is open, commands at a steady R per second:
   a warm-up of W seconds, not counted, then S seconds measured, send -> first outcome per
   command. Half pay invoices nobody paid yet (the checkout opener calls the provider
   meanwhile), half pending ones (rejected).

Both windows are metered (CPU per command per process, machine busy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
import uuid
from datetime import date
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from anchors import all_anchors
from common import Scratch, Services, meter

from payments_contracts.invoices import (
    InvoiceRegistered,
    InvoiceRegisteredPayload,
    InvoiceSynced,
    InvoiceSyncedPayload,
)
from payments_contracts.money import Money
from payments_contracts.payments import (
    BillingAddress,
    GuestCheckout,
    PayInvoice,
    PayInvoicePayload,
)
from payments_contracts.topics import TopicRegistry
from payments_platform.kafka import client_options

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


class Answers:
    """Reads payments.events and stamps the arrival time of each command's answer."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self.types: dict[str, str] = {}
        self.opened = 0
        self._waiting: set[str] = set()
        self._all_in = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # aiokafka's default long poll, not a short fetch_max_wait_ms: with fetch_min_bytes=1
        # the broker answers as soon as an answer is there, so a short wait only adds empty
        # fetches (CPU of the load generator and of Kafka, on the cores being measured).
        self._consumer = AIOKafkaConsumer(
            topic, **client_options(bootstrap), auto_offset_reset="latest", group_id=None
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
                cause = event["causation_id"]
                self.arrived.setdefault(cause, now)
                self.types.setdefault(cause, event["type"])
                self._waiting.discard(cause)
                if not self._waiting:
                    self._all_in.set()

    async def wait_for(self, ids: list[str], timeout: float) -> None:
        # Told on arrival, not by scanning every id every few ms: the load generator
        # shares the two cores with what it measures.
        self._waiting = {i for i in ids if i not in self.arrived}
        self._all_in.clear()
        if not self._waiting:
            return
        try:
            await asyncio.wait_for(self._all_in.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{len(self._waiting)} commands unanswered") from None

    async def stop(self) -> None:
        if self._task is not None:
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
    producer = AIOKafkaProducer(**client_options(bootstrap), linger_ms=5, max_batch_size=256 * 1024)
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


async def throughput(
    scratch: Scratch,
    answers: Answers,
    invoices: list[tuple[str, str]],
    n: int,
    pids: list[int],
    provider: list[int],
) -> dict[str, Any]:
    commands = [pay_command(*invoices[i % len(invoices)]) for i in range(n)]
    encoded = [(c.key(), c.model_dump_json().encode()) for c in commands]
    producer = AIOKafkaProducer(**client_options(scratch.bootstrap), linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        m, postgres = await meter(scratch, pids, provider)
        started = time.perf_counter()
        for key, value in encoded:
            await producer.send(scratch.registry.payments_commands.name, value, key=key)
        await producer.flush()
        ids = [str(c.event_id) for c in commands]
        await answers.wait_for(ids, timeout=120 + n / 50)
        last = max(answers.arrived[i] for i in ids)
        await m.stop()
        await postgres.stop()
    finally:
        await producer.stop()
    requested = sum(answers.types[str(c.event_id)] == "payment.requested" for c in commands)
    summary = m.summary(n)
    rate = n / (last - started)
    print(
        f"  payment-intake: {n} commands ({requested} requested) in {last - started:.2f}s = {rate:,.0f}/s; "
        f"CPU µs/command {summary['cpu_us_per_message']}",
        flush=True,
    )
    return {
        "value": rate,
        "unit": "commands/s",
        "messages": n,
        **summary,
        "records": encoded,
        "note": f"{requested} of {n} commands requested a payment, the rest were rejected (already pending)",
    }


async def latency(
    scratch: Scratch,
    answers: Answers,
    pending: list[tuple[str, str]],
    fresh: list[tuple[str, str]],
    args: argparse.Namespace,
    pids: list[int],
    provider: list[int],
) -> dict[str, Any]:
    """Steady rate: even commands pay a fresh invoice, odd ones a pending one."""
    rate = args.rate
    producer = AIOKafkaProducer(**client_options(scratch.bootstrap), linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    warm = int(rate * args.warmup)
    total = warm + int(rate * args.seconds)
    # Built and encoded before the clock starts, as in the throughput phase: the load
    # generator's own CPU is on the two cores whose latency is measured.
    commands = []
    for i in range(total):
        target = fresh[i // 2] if i % 2 == 0 else pending[(i * 7919) % len(pending)]
        command = pay_command(*target)
        commands.append((str(command.event_id), command.key(), command.model_dump_json().encode()))
    m, postgres = await meter(scratch, pids, provider, start=False)
    try:
        start = time.perf_counter()
        for i, (command_id, key, value) in enumerate(commands):
            if i == warm:
                m.start()
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i >= warm:
                sent[command_id] = time.perf_counter()
            await producer.send(scratch.registry.payments_commands.name, value, key=key)
        await producer.flush()
        await answers.wait_for(list(sent), timeout=120)
        await m.stop()
        await postgres.stop()
    finally:
        await producer.stop()
    latencies = sorted((answers.arrived[i] - t) * 1000 for i, t in sent.items())
    requested = sum(answers.types[i] == "payment.requested" for i in sent)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    summary = m.summary(len(sent))
    print(
        f"  payment-intake at {rate}/s: {len(latencies)} commands ({requested} requested): p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms; CPU µs/command {summary['cpu_us_per_message']}",
        flush=True,
    )
    return {
        "value": p99,
        "unit": "ms",
        "messages": len(sent),
        **summary,
        "note": f"{len(sent)} commands at {rate}/s after a {args.warmup}s warm-up, half requesting a payment "
        f"(checkouts opened meanwhile); last run p50 {p50:.1f} ms, max {latencies[-1]:.1f} ms",
    }


async def run_once(bootstrap: str, admin_dsn: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    per_account = 5
    accounts = max(10, min(2000, args.commands // 10))
    async with Scratch(bootstrap, admin_dsn) as scratch:
        services = Services(scratch)
        answers = Answers(bootstrap, scratch.registry.payments_events.name)
        try:
            provider = services.start("sandbox-provider")
            intake = services.start("payment-intake")
            await services.ready("sandbox-provider", services.ports["sandbox-provider"])
            await services.ready("payment-intake", services.ports["payment-intake"])
            invoices = invoice_facts(accounts, per_account)
            fresh_needed = (int(args.rate * (args.warmup + args.seconds)) + 1) // 2 + 1
            fresh = [(f"F-{i % accounts}", f"FRESH-{i}") for i in range(fresh_needed)]
            await seed(bootstrap, scratch.registry, services.ports["sandbox-provider"], invoices + fresh)
            await answers.start()
            await facts_applied(scratch.dsn, len(invoices) + len(fresh))
            pids, providers = [intake.pid], [provider.pid]
            await throughput(scratch, answers, [fresh[-1]], 1, pids, providers)  # warm
            full = await throughput(scratch, answers, invoices, args.commands, pids, providers)
            # The checkout opener finishes phase 1's payments first, so the steady rate
            # measures commands, not a backlog of provider calls.
            wanted = sum(t == "payment.requested" for t in answers.types.values())
            deadline = time.monotonic() + 300
            while answers.opened < wanted and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            steady = await latency(scratch, answers, invoices, fresh[:-1], args, pids, providers)
        finally:
            await answers.stop()
            services.stop()
        records = full.pop("records")
        commands = scratch.registry.payments_commands
        full["anchors"] = await all_anchors(
            scratch, records, {commands.name: commands.partitions}, commands.partitions
        )
    return {"payment_intake.throughput": full, "payment_intake.p99_ms": steady}
