"""Pooled connections go back to the pool without asyncpg's reset statement, unless they
took session state."""

from __future__ import annotations

import asyncpg
import asyncpg.pool

__all__ = ["keeps_session_state", "released"]

# Server processes whose connection took session state that outlives a transaction (a
# session advisory lock): reset in full when released to the pool (`released`).
_SESSION_STATE: set[int] = set()


def keeps_session_state(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """Mark a pooled connection that takes session state (a session-level advisory lock,
    a plain SET, LISTEN, a cursor WITH HOLD): the pool resets it in full when it comes
    back. Every other connection goes back without asyncpg's reset statement
    (tests/unit/test_session_state_marks.py finds the callers)."""
    _SESSION_STATE.add(conn.get_server_pid())


async def released(conn: asyncpg.Connection) -> None:
    """The pool's reset. asyncpg has already rolled back a transaction left open (and
    dropped listeners in the client); its reset statement (advisory unlock all, CLOSE ALL,
    UNLISTEN *, RESET ALL) is one more round trip per acquire, and a round trip is what a
    small transaction costs most here: a third of a read request's (bench/read_api_micro.py,
    docs/decisions/0052-pool-connections-without-reset.md). Our transactions leave no session state
    but where `keeps_session_state` says so."""
    pid = conn.get_server_pid()
    if pid in _SESSION_STATE:
        _SESSION_STATE.discard(pid)
        await conn.execute(conn.get_reset_query())
