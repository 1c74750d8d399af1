"""Writing many rows: `INSERT ... SELECT FROM unnest(arrays)` against COPY into a staging
table and one set-based merge, 2,000 rows a transaction, interleaved, client and server
CPU per row: invoice-sync's upsert of 17 columns with plain COPY into a table as the
anchor, then the projector's own store saving changed invoices both ways.

    .venv/bin/python bench/write_ab.py [--rows 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "deploy")]

from procs import proc_stat  # noqa: E402

from payments_platform.messaging import install_messaging_tables  # noqa: E402
from status_projector.adapters.repositories import ReadModelStore  # noqa: E402
from status_projector.adapters.rows import Stage  # noqa: E402
from status_projector.adapters.schema import VersionTables, install  # noqa: E402
from status_projector.domain.model import ErpFacts, Invoice  # noqa: E402
from status_projector.domain.status import PaymentState  # noqa: E402
from status_projector.settings import SCHEMA  # noqa: E402

BATCH = 2000
COLUMNS = [
    ("account_id", "text"), ("invoice_number", "text"), ("erp_version", "bigint"), ("erp_status", "text"),
    ("closed_by_snapshot", "bool"), ("order_number", "text"), ("po_number", "text"), ("invoice_date", "date"),
    ("due_date", "date"), ("currency", "text"), ("total_minor", "bigint"), ("open_minor", "bigint"),
    ("billing_country", "text"), ("posted_payments", "jsonb"), ("source_event_id", "uuid"),
    ("correlation_id", "uuid"), ("erp_occurred_at", "timestamptz"),
]  # fmt: skip
NAMES = [c for c, _ in COLUMNS]
KEY = "account_id, invoice_number"
DDL = ", ".join(f"{c} {t}" for c, t in COLUMNS)


def rows(n: int, version: int) -> list[tuple[Any, ...]]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        (f"ACC-{i % 2000:05d}", f"INV-{i:08d}", version, "open", False, f"SO-{i}", f"PO-{i}",
         date(2026, 1, 1), date(2026, 2, 1), "USD", 10_000 + i, 10_000 + i - version, "US", "[]",
         uuid.uuid4(), uuid.uuid4(), now)
        for i in range(n)
    ]  # fmt: skip


UPSERT_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in NAMES[2:])


async def by_unnest(conn: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    params = ", ".join(f"${i + 1}::{t}[]" for i, (_, t) in enumerate(COLUMNS))
    await conn.execute(
        f"INSERT INTO target ({', '.join(NAMES)}) SELECT * FROM unnest({params}) "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {UPSERT_SET}",
        *(list(column) for column in zip(*batch, strict=True)),
    )


async def by_staging(conn: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("stage", records=batch, columns=NAMES)
    await conn.execute(
        f"INSERT INTO target ({', '.join(NAMES)}) SELECT {', '.join(NAMES)} FROM stage "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {UPSERT_SET}"
    )


async def by_copy(conn: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("anchor", records=batch, columns=NAMES)


async def one(
    dsn: str, label: str, write: Any, data: list[list[tuple[Any, ...]]]
) -> tuple[float, float, float]:
    """(client µs, server µs, wall µs) per row over every batch, one transaction each."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS target, anchor; CREATE TABLE target ({DDL}, PRIMARY KEY ({KEY}));"
            f"CREATE TABLE anchor ({DDL});"
            f"CREATE TEMP TABLE stage ({DDL}) ON COMMIT DELETE ROWS"
        )
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        total = sum(len(b) for b in data)
        server0 = (proc_stat(backend) or (0.0, 0))[0]
        client0, wall0 = time.process_time(), time.perf_counter()
        for batch in data:
            async with conn.transaction():
                await write(conn, batch)
        client, wall = time.process_time() - client0, time.perf_counter() - wall0
        server = (proc_stat(backend) or (0.0, 0))[0] - server0
        return client / total * 1e6, server / total * 1e6, wall / total * 1e6
    finally:
        await conn.close()


class UnnestStore(ReadModelStore):
    """The projector's store as it was: its batch UPDATEs from `unnest` of array parameters."""

    async def _update(
        self,
        stage: Stage,
        table: str,
        key: Sequence[tuple[str, str]],
        columns: Sequence[tuple[str, str]],
        rows: list[tuple[Any, ...]],
    ) -> None:
        rows.sort()
        both = [*key, *columns]
        params = ", ".join(f"${n + 1}::{t}[]" for n, (_, t) in enumerate(both))
        names = ", ".join(c for c, _ in both)
        sets = ", ".join(f"{c} = v.{c}" for c, _ in columns)
        match = " AND ".join(f"t.{c} = v.{c}" for c, _ in key)
        sql = f"UPDATE {table} AS t SET {sets} FROM unnest({params}) AS v({names}) WHERE {match}"
        await self.conn.execute(sql, *(list(column) for column in zip(*rows, strict=True)))


async def projector(dsn: str, n: int, rounds: int) -> None:
    """The projector's own store: `n` invoices loaded, a payment followed on each (its status
    columns change), saved; the same changes the two ways, interleaved."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}; SET search_path TO {SCHEMA}")
    await install_messaging_tables(conn)
    await install(conn)
    tables = VersionTables(1)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    facts = ErpFacts(erp_version=1, currency="USD", order_number="SO", po_number="PO",
                     invoice_date=date(2026, 1, 1), due_date=date(2026, 2, 1), total_minor=10_000,
                     open_amount_minor=10_000, erp_status="open", billing_country="US")  # fmt: skip
    keys = [(f"ACC-{i % 200:05d}", f"INV-{i:08d}") for i in range(n)]
    store = ReadModelStore(conn, tables)
    async with conn.transaction():
        await store.lock()
        await store.save_invoices([Invoice.from_erp(a, k, facts) for a, k in keys])
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    try:
        for r in range(rounds):
            for label, kind in (("unnest", UnnestStore), ("COPY + merge", ReadModelStore)):
                at += timedelta(seconds=1)  # a newer payment each pass: every row changes
                client = server = 0.0
                # The server's CPU over the whole pass (its reads included, the same both
                # ways): per batch it is below the 10 ms a /proc tick counts.
                server0 = (proc_stat(backend) or (0.0, 0))[0]
                for i in range(0, n, BATCH):
                    batch = kind(conn, tables)
                    async with conn.transaction():
                        await batch.lock()
                        invoices = await batch.invoices(keys[i : i + BATCH])
                        for invoice in invoices:
                            invoice.follow_payment(f"p-{at.timestamp()}", PaymentState.REQUESTED, 100, at)
                            invoice.touched(at)
                            invoice.refresh()
                        client0 = time.process_time()
                        await batch.save_invoices(invoices)
                        client += time.process_time() - client0
                server += (proc_stat(backend) or (0.0, 0))[0] - server0
                print(
                    f"round {r + 1} projector {label:14s}: saving {n:,} changed invoices, "
                    f"client {client / n * 1e6:5.2f} µs/row saving; server {server / n * 1e6:5.2f} µs/row "
                    "loading and saving",
                    flush=True,
                )
    finally:
        await conn.close()


async def measure(dsn: str, n: int, rounds: int) -> None:
    # Inserts first (every row new), then the same keys again (every row an update).
    fresh, again = rows(n, 1), rows(n, 2)
    ways = {"unnest": by_unnest, "COPY + merge": by_staging, "COPY (anchor)": by_copy}
    for r in range(rounds):
        for label, write in ways.items():
            results = []
            for data in (fresh, fresh + again) if write is not by_copy else (fresh, fresh):
                batches = [data[i : i + BATCH] for i in range(0, len(data), BATCH)]
                results.append(await one(dsn, label, write, batches))
            (ci, si, wi), (cu, su, wu) = results
            print(
                f"round {r + 1} {label:14s} insert: client {ci:5.2f} server {si:5.2f} wall {wi:6.2f} µs/row; "
                f"insert+update: client {cu:5.2f} server {su:5.2f} wall {wu:6.2f} µs/row",
                flush=True,
            )
    print(f"load average {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part", choices=("both", "upsert", "projector"), default="both")
    args = parser.parse_args()
    dsn = os.environ.get("PAYMENTS_DATABASE_URL")
    state_dir = None
    if dsn is None:
        from run import infrastructure

        env, state_dir = infrastructure()
        dsn = env["PAYMENTS_DATABASE_URL"]
    try:
        if args.part in ("both", "upsert"):
            asyncio.run(measure(dsn, args.rows, args.rounds))
        if args.part in ("both", "projector"):
            asyncio.run(projector(dsn, args.rows, args.rounds))
    finally:
        if state_dir is not None:
            from system import stop_infrastructure

            stop_infrastructure(state_dir)


if __name__ == "__main__":
    main()
