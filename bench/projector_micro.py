"""The projector's consume path on a real PostgreSQL, without Kafka: the bench's events
as consumer records, through `TransactionalConsumer.process` (decode, offsets locked and
stored, handlers, the store's reads and writes) in batches of 2,000, each round into a
fresh database. Prints client CPU (this process) and server CPU (the pool's backends)
per event: a repeatable figure for one version of the code, to compare two versions run
one after the other, interleaved (`PYTHONPATH=<other tree's src dirs>` for the other).

    .venv/bin/python bench/projector_micro.py [--events 200000] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka.structs import ConsumerRecord

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from bench_status_projector import events  # noqa: E402
from procs import proc_stat  # noqa: E402

from payments_contracts.topics import TopicRegistry  # noqa: E402
from payments_platform.messaging import install_messaging_tables  # noqa: E402
from status_projector.adapters.schema import VersionTables, install  # noqa: E402
from status_projector.projections import collector_allocations, projection_consumer  # noqa: E402
from status_projector.settings import SCHEMA  # noqa: E402

BATCH = 2000
PARTITIONS = 4


def records(n: int) -> list[ConsumerRecord[bytes, bytes]]:
    """As a fetch gives them: each topic's partitions, per-account order kept."""
    reg = TopicRegistry()
    invoices, payments = events(n)
    out: list[ConsumerRecord[bytes, bytes]] = []
    offsets: dict[tuple[str, int], int] = {}
    for topic, items in ((reg.invoices.name, invoices), (reg.payments_events.name, payments)):
        for key, value in items:
            partition = hash(key) % PARTITIONS
            offset = offsets.get((topic, partition), 0)
            offsets[(topic, partition)] = offset + 1
            out.append(
                ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(key), len(value), ())
            )
    # Interleave the two topics in chunks, as fetches of both would.
    inv = [r for r in out if r.topic == reg.invoices.name]
    pay = [r for r in out if r.topic == reg.payments_events.name]
    mixed: list[ConsumerRecord[bytes, bytes]] = []
    step = BATCH // 2
    for i in range(0, max(len(inv), len(pay)), step):
        mixed += inv[i : i + step] + pay[i : i + step]
    return mixed


async def one_round(admin_dsn: str, recs: list[ConsumerRecord[bytes, bytes]]) -> tuple[float, float, float]:
    name = f"micro_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        setup = await asyncpg.connect(dsn)
        await setup.execute(f"CREATE SCHEMA {SCHEMA}; SET search_path TO {SCHEMA}")
        await install_messaging_tables(setup)
        await install(setup)
        await setup.close()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, server_settings={"search_path": SCHEMA})
        tables = VersionTables(1)
        consumer = projection_consumer(
            name=tables.consumer,
            tables=tables,
            registry=TopicRegistry(),
            pool=pool,
            bootstrap="unused:9092",
            batch_size=BATCH,
        )
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        gc.collect()
        server0 = (proc_stat(backend) or (0.0, 0))[0]
        client0, wall0 = time.process_time(), time.perf_counter()
        for i in range(0, len(recs), BATCH):
            await consumer.process(recs[i : i + BATCH])
        client, wall = time.process_time() - client0, time.perf_counter() - wall0
        server = (proc_stat(backend) or (0.0, 0))[0] - server0
        await pool.close()
        n = len(recs)
        return client / n * 1e6, server / n * 1e6, wall / n * 1e6
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    recs = records(args.events)
    gc.collect()
    gc.freeze()  # as the service does (payments_platform.service)
    gc.set_threshold(collector_allocations(BATCH), 20, 20)
    dsn = os.environ["PAYMENTS_DATABASE_URL"]
    for r in range(args.rounds):
        client, server, wall = asyncio.run(one_round(dsn, recs))
        print(
            f"{args.label} round {r + 1}: client {client:.2f} µs/event, server {server:.2f}, "
            f"wall {wall:.2f} (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
