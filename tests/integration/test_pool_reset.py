"""Pooled connections go back to the pool without asyncpg's reset statement
(payments_platform.sessions): what a transaction leaves is gone with it, and a connection
marked with `keeps_session_state` (the relay's lock, the snapshot lock) is reset in full,
so its session advisory lock does not outlive its use."""

from __future__ import annotations

import asyncpg
import pytest

from payments_platform.database import open_pool
from payments_platform.sessions import keeps_session_state

pytestmark = pytest.mark.integration

LOCK = "SELECT pg_try_advisory_lock(4242)"


async def test_a_marked_connection_gives_its_session_lock_back(database_url: str) -> None:
    pool = await open_pool(database_url, "reset_marked", size=1)
    other = await asyncpg.connect(database_url)
    try:
        async with pool.acquire() as conn:
            keeps_session_state(conn)
            assert await conn.fetchval(LOCK)
            assert not await other.fetchval(LOCK)
        assert await other.fetchval(LOCK)  # released with the connection
        await other.execute("SELECT pg_advisory_unlock_all()")
        async with pool.acquire() as conn:  # the same connection, unmarked again
            assert await conn.fetchval("SELECT true")
    finally:
        await other.close()
        await pool.close()


async def test_an_unmarked_connection_keeps_what_its_session_took(database_url: str) -> None:
    """Why the mark is needed (tests/unit/test_session_state_marks.py finds every such statement)."""
    pool = await open_pool(database_url, "reset_unmarked", size=1)
    other = await asyncpg.connect(database_url)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval(LOCK)
        assert not await other.fetchval(LOCK)
    finally:
        await other.close()
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_and_local_settings_go_with_it(
    database_url: str,
) -> None:
    pool = await open_pool(database_url, "reset_tx", size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS t (n int)")
            before = await conn.fetchval("SHOW work_mem")
            await conn.execute("BEGIN")
            await conn.execute("SET LOCAL work_mem = '7777kB'")
            await conn.execute("INSERT INTO t VALUES (1)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
            assert before != "7777kB"
            assert await conn.fetchval("SHOW work_mem") == before
            assert not await conn.fetchval("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
    finally:
        await pool.close()
