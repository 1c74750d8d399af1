"""Dead letters stay bounded and an unpublishable message never blocks the outbox.

Records near the broker's 1 MiB limit, in bytes that are not UTF-8, once grew by
replacement characters into dead letters Kafka refused; the relay then retried them
forever and nothing behind them was published.
"""

from __future__ import annotations

import asyncio

import pytest
from test_consume_outbox_block import Worker, effects, stream, wait_for_effects

from kafka_tools import eventually, produce, read_all
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import OutboxRelay
from payments_platform.messaging.dead_letter import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

NEAR_LIMIT = 1_000_000  # the broker takes 1 MiB per message


async def test_huge_and_non_utf8_records_become_bounded_dead_letters_and_the_rest_flows(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    good = stream(40)
    bad = [
        (b"ACC-1", b"\xff\xfe" * (NEAR_LIMIT // 2)),  # not UTF-8, near the limit
        (b"ACC-2", b'{"a": "' + b"x" * (NEAR_LIMIT - 20) + b'"}'),  # valid JSON, near the limit
        (b"ACC-3", b"\xc3\x28 4111 1111 1111 1111 \x80"),  # not UTF-8, with a card number
    ]
    await produce(kafka_bootstrap, topics.erp_invoices.name, [*good[:20], *bad, *good[20:]])
    worker = Worker(kafka_bootstrap, database_url, topics)
    worker.start()
    try:
        await wait_for_effects(database_url, len(good))
        dead = await eventually(
            lambda: read_all(kafka_bootstrap, topics.erp_invoices.dead_letter),
            lambda records: len(records) >= len(bad),
            timeout=60,
            what="three dead letters",
        )
    finally:
        worker.kill()
    assert await effects(database_url) == (len(good), len(good))
    assert len(dead) == len(bad)
    by_account = {r.key: r for r in dead}
    assert all(len(r.value) <= MAX_BODY_BYTES for r in dead)
    huge = dict((k, v.decode()) for k, v in by_account[b"ACC-1"].headers)
    assert huge["dlq.body.truncated"] == "true" and int(huge["dlq.body.bytes"]) == NEAR_LIMIT
    assert by_account[b"ACC-1"].value == b"\xff\xfe" * (MAX_BODY_BYTES // 2), "bytes kept as they were"
    small = by_account[b"ACC-3"].value
    assert small.startswith(b"\xc3\x28 ") and small.endswith(b" \x80") and b"4111" not in small


async def test_a_message_kafka_refuses_is_set_aside_and_the_rows_behind_it_are_published(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    pool = await open_pool(database_url, "relay_test")
    try:
        async with pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO outbox (topic, key, value, headers) VALUES ($1, $2, $3, '{}')",
                [
                    (topics.invoices.name, b"A", b"before"),
                    (topics.invoices.name, b"A", b"x" * (2 * 1024 * 1024)),  # over the broker's limit
                    (topics.invoices.name, b"A", b"after"),
                ],
            )
        relay = OutboxRelay(pool, kafka_bootstrap, service="relay-test", idle_poll_s=0.1)
        stopping = asyncio.Event()
        task = asyncio.create_task(relay.run(stopping))
        try:
            published = await eventually(
                lambda: read_all(kafka_bootstrap, topics.invoices.name),
                lambda records: len(records) >= 2,
                timeout=60,
                what="the rows around the refused one",
            )
            pending = await eventually(
                lambda: pool.fetchval("SELECT count(*) FROM outbox"), lambda n: n == 0, what="an empty outbox"
            )
        finally:
            stopping.set()
            await asyncio.wait_for(task, 30)
        set_aside = await pool.fetch("SELECT length(value) AS size, reason FROM outbox_unpublishable")
    finally:
        await pool.close()
    assert [r.value for r in published] == [b"before", b"after"]
    assert pending == 0
    assert [r["size"] for r in set_aside] == [2 * 1024 * 1024]
    assert "TooLarge" in set_aside[0]["reason"]


