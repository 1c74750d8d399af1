"""A connection pool confined to the service's own schema."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from .messaging.schema import install_messaging_tables
from .messaging.transient import retrying
from .sessions import released


async def open_pool(
    dsn: str,
    schema: str,
    *,
    size: int = 8,
    install: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    until: asyncio.Event | None = None,
) -> asyncpg.Pool:
    """Create the schema and its tables (idempotent), then a pool bound to it.

    Every commit waits for the WAL flush, the read model's included (see
    docs/decisions/0026-durable-commits-no-offset-past-gap.md).
    """
    async for attempt in retrying(f"connect {schema}", until=until):
        with attempt:
            conn = await asyncpg.connect(dsn)
            try:
                async with conn.transaction():
                    # Two services starting together may race to create a schema.
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                    await install_messaging_tables(conn)
                    if install is not None:
                        await install(conn)
            finally:
                await conn.close()
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        server_settings={
            "search_path": schema,
            "application_name": schema,
        },
        reset=released,
    )
    assert pool is not None
    return pool


async def open_read_pool(dsn: str, schema: str, *, size: int = 8) -> asyncpg.Pool:
    """A pool on a read-only copy (a streaming replica) of the service's schema.

    No connection is made up front: a replica that is down when the service starts must
    not stop it, as reads fall back to the primary until the replica answers.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        server_settings={"search_path": schema, "application_name": f"{schema}-reads"},
        reset=released,
    )
    assert pool is not None
    return pool


async def answers_within(pool: asyncpg.Pool, seconds: float) -> bool:
    """Whether `SELECT true` answers within `seconds`, without waiting for a frozen
    server to acknowledge the cancel (asyncio.wait_for would, past the probe's timeout)."""
    task = asyncio.ensure_future(pool.fetchval("SELECT true"))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return False
    return task.exception() is None and bool(task.result())
