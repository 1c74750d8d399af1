"""Figure: the read API with a large read model, loaded by COPY straight into its tables.

N invoices across N/1,000 accounts (10,000,000 across 10,000 with `--full`) are written
with COPY into the active version's invoice table (its secondary index built after the
load, as a rebuild does), no Kafka involved; then one status-projector serves them and
the list, detail and summary routes are timed for an account of 1,000 invoices, one
request at a time, each route's p99 a figure of its own. The load itself is timed too
(rows per second of COPY: the anchor of this figure).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
from bench_status_projector import p99
from common import SANDBOX_MERCHANT, Scratch, Services, free_port, merchant_file

from payments_platform.sandbox import demo_api_key
from status_projector.adapters.rows import INVOICE_COLUMNS
from status_projector.adapters.schema import VersionTables, add_secondary_indexes, install
from status_projector.settings import SCHEMA

PER_ACCOUNT = 1000
STATUSES = ("paid", "paid", "paid", "pending", "payable", "partially_paid", "not_payable")


def _account_rows(account: str) -> bytes:
    """One account's invoices as COPY text (tab-separated, \\N for NULL), in
    INVOICE_COLUMNS order."""
    lines = []
    for i in range(PER_ACCOUNT):
        due = date(2025, 1, 1) + timedelta(days=i % 730)
        status = STATUSES[i % len(STATUSES)]
        paid = status == "paid"
        values: dict[str, Any] = {
            "account_id": account,
            "invoice_number": f"INV-{i:06d}",
            "currency": "USD",
            "order_number": f"SO-{i}",
            "po_number": f"PO-{i}",
            "invoice_date": "2025-01-01",
            "due_date": due.isoformat(),
            "total_minor": 10_000 + i,
            "open_amount_minor": 10_000 + i,
            "erp_status": "open",
            "erp_version": 1,
            "billing_country": "US",
            "posted_refs": "[]",
            "registration": "registered",
            "registration_version": 1,
            "closed_version": -1,
            "succeeded": '{"p-%d": %d}' % (i, 10_000 + i) if paid else "{}",  # noqa: UP031
            "current_payment_id": f"p-{i}" if status != "payable" else None,
            "current_payment_state": "succeeded" if paid else ("requested" if status == "pending" else None),
            "current_payment_amount": 10_000 + i if status != "payable" else None,
            "current_payment_at": "2025-01-02T00:00:00+00" if status != "payable" else None,
            "restricted": "f",
            "last_event_at": "2025-01-02T00:00:00+00",
            "balance_minor": 0 if paid else 10_000 + i,
            "pay_status": status,
            "not_payable_reason": "closed" if status == "not_payable" else None,
        }
        if status == "not_payable":
            values["closed_reason"] = "closed"
            values["closed_version"] = 1
        lines.append("\t".join("\\N" if values.get(c) is None else str(values[c]) for c in INVOICE_COLUMNS))
    return ("\n".join(lines) + "\n").encode()


async def load(dsn: str, invoices: int) -> tuple[list[str], float]:
    """The read model's invoice table filled with `invoices` rows by COPY; (accounts, rows/s)."""
    accounts = [f"ACC-{a:05d}" for a in range(max(1, invoices // PER_ACCOUNT))]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": SCHEMA})
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await install(conn)
        tables = VersionTables(1)
        await conn.execute(f"DROP INDEX IF EXISTS {tables.invoices}_by_due")
        template = _account_rows("\x00")

        async def chunks() -> AsyncIterator[bytes]:
            for account in accounts:
                yield template.replace(b"\x00", account.encode())

        started = time.perf_counter()
        await conn.copy_to_table(tables.invoices, source=chunks(), columns=INVOICE_COLUMNS)
        seconds = time.perf_counter() - started
        await add_secondary_indexes(conn, tables)
        await conn.execute(f"ANALYZE {tables.invoices}")
    finally:
        await conn.close()
    return accounts, len(accounts) * PER_ACCOUNT / seconds


async def route_latencies(port: int, account: str, requests: int) -> dict[str, list[float]]:
    """ms per request of each route, one request at a time, the routes interleaved."""
    headers = {"authorization": f"Bearer {demo_api_key(SANDBOX_MERCHANT)}"}
    rng = random.Random(7)
    paths = {
        "list": lambda: (
            f"/v1/accounts/{account}/invoices",
            rng.choice(
                [{"limit": 50}, {"limit": 50, "pay_status": "pending"}, {"limit": 50, "sort": "-due_date"}]
            ),
        ),
        "detail": lambda: (f"/v1/accounts/{account}/invoices/INV-{rng.randrange(PER_ACCOUNT):06d}", {}),
        "summary": lambda: (f"/v1/accounts/{account}/summary", {}),
    }
    out: dict[str, list[float]] = {name: [] for name in paths}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=headers) as client:
        for n in range(requests):
            name = list(paths)[n % len(paths)]
            path, params = paths[name]()
            started = time.perf_counter()
            response = await client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text
            if n >= len(paths) * 10:  # the first requests warm the pool and the caches
                out[name].append(elapsed)
    return out


async def run_once(bootstrap: str, admin_dsn: str, invoices: int, requests: int) -> dict[str, dict[str, Any]]:
    async with Scratch(bootstrap, admin_dsn, partitions=4) as scratch:
        accounts, copy_rate = await load(scratch.dsn, invoices)
        services = Services(
            scratch,
            extra={
                "PAYMENTS_MERCHANT_CONFIG": str(merchant_file(scratch.logs, accounts)),
                "PAYMENTS_TOPIC_PARTITIONS": "4",
            },
        )
        port = free_port()
        try:
            services.start("status-projector", env={"STATUS_PROJECTOR_HTTP_PORT": str(port)})
            await services.ready("status-projector", port)
            await asyncio.sleep(1.0)
            latencies = await route_latencies(port, accounts[len(accounts) // 2], requests)
        finally:
            services.stop()
    loaded = len(accounts) * PER_ACCOUNT
    out = {}
    for route, values in latencies.items():
        out[f"read_api.{route}_p99_ms"] = {
            "value": p99(values),
            "unit": "ms",
            "messages": len(values),
            "invoices": loaded,
            "anchors": {"pg_copy_load": copy_rate},
            "note": f"{loaded:,} invoices across {len(accounts):,} accounts loaded by COPY; "
            f"{len(values)} requests to an account of {PER_ACCOUNT:,} invoices, one at a time; "
            f"p50 {statistics.median(values):.2f} ms; COPY {copy_rate:,.0f} rows/s",
        }
    print(
        "  read API at scale: "
        + ", ".join(f"{r} p99 {p99(v):.2f} ms" for r, v in latencies.items())
        + f" ({loaded:,} invoices; COPY {copy_rate:,.0f} rows/s)",
        flush=True,
    )
    return out
