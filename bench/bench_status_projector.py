"""Figures of the status projector: events/s and CPU per event with 1, 2 and 4 instances
in one consumer group, the rebuild of all N events, and the read API's p99.

For each instance count a fresh database and topic prefix (partitions: the largest
instance count, at least 4, so 4 instances get one partition each). N events (200
accounts x 1,000 invoices at 1M; each invoice synced, registered, payment requested,
checkout opened, succeeded or failed) are produced in batches (timed: the produce
anchor), then the instances start as OS processes; the window opens when the first
answers ready (events projected before are left out of count and CPU) and ends when the
projection's stored offsets (its `consumer_offsets` rows, committed with the read model)
reach the end of both topics. With one instance the read API is then timed for an account of 1,000
invoices, the instance stopped, and `status-projector-ops rebuild` run as a process of
its own over the same N events.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import resource
import statistics
import subprocess
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from anchors import Records, all_anchors, produce_batched
from common import BIN, SANDBOX_MERCHANT, Scratch, Services, committed, free_port, merchant_file, meter
from procs import OBSERVER

from payments_platform.sandbox import demo_api_key

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


@functools.lru_cache(maxsize=2)
def events(n: int, start: int = 0) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(invoices, payments.events) as (key, value), in per-account order: n events from
    event `start` on. Cached: building 5,000,000 takes two minutes, and every run of a
    size produces the same records."""
    invoices: list[tuple[bytes, bytes]] = []
    payments: list[tuple[bytes, bytes]] = []
    first = start // EVENTS_PER_INVOICE
    for i in range(first, first + n // EVENTS_PER_INVOICE):
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


async def until_projected(conn: asyncpg.Connection, topics: list[str], total: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (done := await committed(conn, topics)) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"projected {done} of {total} events")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def api_latencies(port: int, account: str, requests: int) -> list[float]:
    """The portal's read shapes against one account: pages with cursors, filters, one
    invoice, the summary; one request at a time, ms each."""
    headers = {"authorization": f"Bearer {demo_api_key(SANDBOX_MERCHANT)}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=headers) as client:
        first = await client.get(f"/v1/accounts/{account}/invoices", params={"limit": 50})
        assert first.status_code == 200, first.text
        body = first.json()
        numbers = [i["invoice_number"] for i in body["items"]]
        cursors: list[str | None] = [None]
        cursor = body["next_cursor"]
        while cursor and len(cursors) < 20:
            cursors.append(cursor)
            cursor = (await client.get(f"/v1/accounts/{account}/invoices", params={"cursor": cursor})).json()[
                "next_cursor"
            ]
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


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def one_group(
    bootstrap: str,
    admin_dsn: str,
    records: tuple[Records, Records],
    instances: int,
    partitions: int,
    api_requests: int,
    rebuild: bool,
) -> dict[str, dict[str, Any]]:
    invoices, payments = records
    total = len(invoices) + len(payments)
    accounts = sorted({k.decode() for k, _ in invoices})
    out: dict[str, dict[str, Any]] = {}
    async with Scratch(bootstrap, admin_dsn, partitions=partitions) as scratch:
        reg = scratch.registry
        topics = [reg.invoices.name, reg.payments_events.name]
        services = Services(
            scratch,
            extra={
                "PAYMENTS_MERCHANT_CONFIG": str(merchant_file(scratch.logs, accounts)),
                "PAYMENTS_TOPIC_PARTITIONS": str(partitions),
            },
        )
        ports = [free_port() for _ in range(instances)]
        produce_s = await produce_batched(bootstrap, reg.invoices.name, partitions, invoices)
        produce_s += await produce_batched(bootstrap, reg.payments_events.name, partitions, payments)
        try:
            processes = [
                services.start(
                    "status-projector",
                    key=f"status-projector-{i}",
                    env={"STATUS_PROJECTOR_HTTP_PORT": str(port), "PAYMENTS_INSTANCE_ID": f"bench-{i}"},
                )
                for i, port in enumerate(ports)
            ]
            # The window opens when the first instance answers ready (events projected
            # before are left out of count and CPU): the others' start-up falls inside it,
            # which can only understate what k instances do, never overstate it.
            readies = [
                asyncio.ensure_future(services.ready(f"status-projector-{i}", port))
                for i, port in enumerate(ports)
            ]
            first, rest = await asyncio.wait(readies, return_when=asyncio.FIRST_COMPLETED)
            for task in first:
                task.result()
            others = asyncio.gather(*rest)
            observer = await asyncpg.connect(scratch.dsn, server_settings={"application_name": OBSERVER})
            try:
                before = await committed(observer, topics)
                m, postgres = await meter(scratch, [p.pid for p in processes])
                started = time.monotonic()
                ended = await until_projected(observer, topics, total, timeout=120 + total / 500)
                await m.stop()
                await postgres.stop()
                await others  # every instance did come up: one that died would fake the speed-up
            finally:
                await observer.close()
            counted = total - before
            summary = m.summary(counted)
            rate = counted / (ended - started)
            print(
                f"  projector x{instances}: {counted:,} events in {ended - started:.2f}s = {rate:,.0f}/s "
                f"({before} before ready); CPU µs/event {summary['cpu_us_per_message']}",
                flush=True,
            )
            out[f"projector.throughput_{instances}"] = {
                "value": rate,
                "unit": "events/s",
                "messages": counted,
                "done_before_window": before,
                **summary,
            }
            if api_requests:
                account = accounts[0]
                held = sum(1 for k, _ in invoices if k.decode() == account) // 2
                latencies = await api_latencies(ports[0], account, api_requests)
                out["projector.api_p99_ms"] = {
                    "value": p99(latencies),
                    "unit": "ms",
                    "messages": len(latencies),
                    "note": f"{len(latencies)} requests, one at a time, account of {held:,} invoices; "
                    f"p50 {statistics.median(latencies):.2f} ms",
                }
                print(
                    f"  read API: p99 {p99(latencies):.2f} ms, {len(latencies)} requests, {held} invoices",
                    flush=True,
                )
        finally:
            services.stop()
        if rebuild:
            out["projector.rebuild_s"] = await rebuild_once(
                scratch, services.env, total, "--no-from-snapshot"
            )
        if instances == 1:
            anchors = await all_anchors(
                scratch, invoices + payments, {t: partitions for t in topics}, partitions, produce_s
            )
            out[f"projector.throughput_{instances}"]["anchors"] = anchors
            if "projector.rebuild_s" in out:
                out["projector.rebuild_s"]["anchors"] = anchors
    return out


async def rebuild_once(scratch: Scratch, env: dict[str, str], total: int, *options: str) -> dict[str, Any]:
    """`status-projector-ops rebuild` over every event, as an operator runs it: a process
    of its own, timed from spawn to exit (its start-up included)."""
    pids: list[int] = []
    m, postgres = await meter(scratch, pids)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(BIN / "status-projector-ops"),
        "rebuild",
        *options,
        # Wide enough that the tool's last line (rich wraps at the terminal's width) is whole.
        env={**env, "COLUMNS": "300"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    pids.append(process.pid)
    output, _ = await process.communicate()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m.groups[0].override_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    await m.stop()
    await postgres.stop()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"status-projector-ops rebuild exited with {process.returncode}:\n{text[-3000:]}")
    summary = m.summary(total)
    summary.pop("peak_rss_mb", None)  # an operator's tool, not a service under load
    print(
        f"  rebuild: {total:,} events in {seconds:.2f}s (process wall); "
        f"CPU µs/event {summary['cpu_us_per_message']}",
        flush=True,
    )
    return {
        "value": seconds,
        "unit": "s",
        "messages": total,
        **summary,
        "note": "process wall time from spawn to exit; the tool's own line: "
        + text.strip().splitlines()[-1][:200],
    }


# Events produced at a time for a scale point: 20,000,000 built at once would hold ~15 GB.
CHUNK = 1_000_000


async def rebuild_only(bootstrap: str, admin_dsn: str, n: int) -> dict[str, dict[str, Any]]:
    """A point of the scale curve on a fresh database, with no live projector before it:
    `status-projector-ops rebuild` over n events from the first offset; then a snapshot of
    what it built, 1% more events, and the rebuild an operator runs, from that snapshot."""
    async with Scratch(bootstrap, admin_dsn, partitions=4) as scratch:
        reg = scratch.registry
        more = max(1000, n // 100)
        accounts = [
            f"ACC-{a:05d}" for a in range((n + more) // EVENTS_PER_INVOICE // INVOICES_PER_ACCOUNT + 1)
        ]
        services = Services(
            scratch,
            extra={
                "PAYMENTS_MERCHANT_CONFIG": str(merchant_file(scratch.logs, accounts)),
                "PAYMENTS_TOPIC_PARTITIONS": "4",
            },
        )

        async def produce(count: int, start: int) -> None:
            for first in range(start, start + count, CHUNK):
                size = min(CHUNK, start + count - first)
                chunk = events(size, first) if count <= CHUNK else events.__wrapped__(size, first)
                await produce_batched(bootstrap, reg.invoices.name, 4, chunk[0])
                await produce_batched(bootstrap, reg.payments_events.name, 4, chunk[1])

        await produce(n, 0)
        full = await rebuild_once(scratch, services.env, n, "--no-from-snapshot")
        snapshot = await asyncio.create_subprocess_exec(
            str(BIN / "status-projector-ops"), "snapshot", env=services.env, stdout=subprocess.PIPE
        )
        await snapshot.communicate()
        await produce(more, n)
        again = await rebuild_once(scratch, services.env, more, "--from-snapshot")
        again["note"] = f"from a snapshot after {n:,} events, {more:,} events after it; " + again["note"]
        return {"projector.rebuild_s": full, "projector.rebuild_from_snapshot_s": again}


async def run_once(
    bootstrap: str, admin_dsn: str, n: int, instances: list[int], api_requests: int, rebuild: bool = True
) -> dict[str, dict[str, Any]]:
    records = events(n)
    partitions = max(4, *instances)
    out: dict[str, dict[str, Any]] = {}
    for count in instances:
        out.update(
            await one_group(
                bootstrap,
                admin_dsn,
                records,
                count,
                partitions,
                api_requests if count == 1 else 0,
                rebuild and count == 1,
            )
        )
    base = out.get("projector.throughput_1")
    for count in instances:
        if count > 1 and base:
            mine = out[f"projector.throughput_{count}"]
            out[f"projector.speedup_{count}_vs_1"] = {
                "value": mine["value"] / base["value"],
                "unit": "x",
                "messages": mine["messages"],
                "note": f"events/s with {count} instances over events/s with 1, same run",
            }
    return out
