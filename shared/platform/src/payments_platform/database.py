"""A connection pool confined to the service's own schema."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from .messaging.schema import install_messaging_tables
from .messaging.transient import retrying


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
    )
    assert pool is not None
    return pool
