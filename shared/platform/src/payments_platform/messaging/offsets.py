"""What the building block stores about a consumer, for operators' runs that move it:
the next offset of each partition and the ids of the events it applied.

A rebuild or replay reads how far its consumer got, starts a new consumer at chosen
offsets, and forgets a consumer it no longer needs; none of them writes the block's
tables itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import asyncpg

Partition = tuple[str, int]  # (topic, partition)
Database: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def stored_offsets(db: Database, consumer: str) -> dict[Partition, int]:
    """The next offset `consumer` reads on each partition it has committed a batch of."""
    rows = await db.fetch(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = $1", consumer
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def rewind(db: Database, consumer: str, offsets: Mapping[Partition, int]) -> None:
    """Make `consumer` read each partition from the given offset next (back or forth):
    its batches are then applied again from there, unless their event ids are stored."""
    await db.executemany(
        """
        INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
        ON CONFLICT (consumer, topic, partition)
        DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()
        """,
        [(consumer, topic, partition, offset) for (topic, partition), offset in sorted(offsets.items())],
    )


async def reset(conn: asyncpg.Connection, consumer: str) -> None:
    """Forget `consumer`: its offsets and the ids of the events it applied (one transaction)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM consumer_offsets WHERE consumer = $1", consumer)
        await conn.execute("DELETE FROM processed_events WHERE consumer = $1", consumer)
