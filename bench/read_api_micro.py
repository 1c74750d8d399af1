"""The read API in-process: the app called straight through ASGI (no HTTP server, no
client), on a real PostgreSQL holding one account of 1,000 invoices, the bench's request
mix (list pages with and without a filter or the other sort, one invoice, the summary).
Prints CPU µs per request of this process (the app, asyncpg, rendering) and the wall
time per request; `--profile` for py-spy. One version of the code per run: compare two
by running them one after the other, interleaved.

    .venv/bin/python bench/read_api_micro.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from bench_read_api import load  # noqa: E402

from payments_contracts.topics import TopicRegistry  # noqa: E402
from payments_platform.database import open_pool  # noqa: E402
from payments_platform.messaging import install_messaging_tables  # noqa: E402
from payments_platform.sandbox import demo_api_key  # noqa: E402
from status_projector.domain.access import MerchantKeys, PortalKeys, digest_of  # noqa: E402
from status_projector.entrypoints.http import build_app  # noqa: E402
from status_projector.settings import SCHEMA  # noqa: E402


async def call(app: Any, path: str, query: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status = 0
    body = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


async def measure(admin_dsn: str, requests: int, rounds: int) -> None:
    name = f"readmicro_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f"CREATE SCHEMA {SCHEMA}; SET search_path TO {SCHEMA}")
        await install_messaging_tables(conn)
        await conn.close()
        accounts, _ = await load(dsn, 1000)
        account = accounts[0]
        key = demo_api_key("bench")
        keys = PortalKeys([MerchantKeys("bench", frozenset(accounts), (digest_of(key),))])
        pool = await open_pool(dsn, SCHEMA, size=4)  # as the service opens it
        app = build_app(pool, TopicRegistry(), keys, provider_configured=True)
        headers = [(b"authorization", f"Bearer {key}".encode()), (b"host", b"localhost")]
        rng = random.Random(7)
        shapes = [
            (f"/v1/accounts/{account}/invoices", "limit=50"),
            (f"/v1/accounts/{account}/invoices", "limit=50&pay_status=pending"),
            (f"/v1/accounts/{account}/invoices", "limit=50&sort=-due_date"),
            (f"/v1/accounts/{account}/invoices/INV-{{n:06d}}", ""),
            (f"/v1/accounts/{account}/summary", ""),
        ]
        plan = []
        for i in range(requests):
            path, query = shapes[i % len(shapes)]
            plan.append((path.format(n=rng.randrange(1000)), query))
        for path, query in plan[:50]:  # warm the pool and the statement caches
            status, body = await call(app, path, query, headers)
            assert status == 200, body
        for r in range(rounds):
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for path, query in plan:
                status, body = await call(app, path, query, headers)
                assert status == 200, body
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(
                f"round {r + 1}: CPU {cpu / requests * 1e6:.0f} µs/request, wall {wall / requests * 1e6:.0f}"
                f" (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        await pool.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(os.environ["PAYMENTS_DATABASE_URL"], args.requests, args.rounds))


if __name__ == "__main__":
    main()
