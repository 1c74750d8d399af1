"""A consumer on the transactional block whose one effect is a row per applied message
(its event id) in `effects`: what the block's tests count to show that nothing was lost
or applied twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from payments_contracts.topics import Topic, TopicRegistry
from payments_platform.messaging import Delivery, Transaction, TransactionalConsumer


async def install_effects(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id uuid NOT NULL)")


async def record_effects(deliveries: Sequence[Delivery], tx: Transaction) -> None:
    await tx.connection.executemany(
        "INSERT INTO effects (event_id) VALUES ($1)", [(d.message.event_id,) for d in deliveries]
    )


def effects_consumer(
    pool: asyncpg.Pool,
    bootstrap: str,
    registry: TopicRegistry,
    topic: Topic,
    *,
    name: str,
    kind: type[TransactionalConsumer] = TransactionalConsumer,
    **options: Any,
) -> TransactionalConsumer:
    """`kind` (a subclass that misbehaves on purpose) reading `topic` into `effects` of
    the pool's schema (`install_effects` creates it); `options` as TransactionalConsumer's."""
    return kind(
        service=name,
        name=name,
        registry=registry,
        topics=[topic],
        pool=pool,
        bootstrap=bootstrap,
        handle=record_effects,
        **options,
    )


async def count_effects(pool: asyncpg.Pool) -> tuple[int, int]:
    """(effects, distinct event ids among them)."""
    row = await pool.fetchrow("SELECT count(*), count(DISTINCT event_id) FROM effects")
    return int(row[0]), int(row[1])
