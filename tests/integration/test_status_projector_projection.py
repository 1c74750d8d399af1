"""The projection on real Kafka and PostgreSQL: order across topics, duplicates,
parking, crash and resume, and equality with a clean rebuild."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from status_projector_support import (
    Clock,
    account_story,
    checkout_opened,
    dump,
    failed,
    invoice_row,
    project_to_end,
    projector_pool,
    publish,
    registered,
    requested,
    succeeded,
    synced,
)

from database_tools import fresh_database
from payments_contracts.topics import TopicRegistry
from payments_platform.messaging import Delivery, Transaction
from payments_platform.topic_admin import ensure_topics
from status_projector import ops
from status_projector.adapters.schema import VersionTables
from status_projector.projections import (
    input_topics,
    kafka_offsets,
    projecting,
    projection_consumer,
    run_until,
)

pytestmark = pytest.mark.integration


def _ctx(pool, topics: TopicRegistry, kafka_bootstrap: str) -> ops.Projecting:  # type: ignore[no-untyped-def]
    return ops.Projecting(pool, topics, kafka_bootstrap, batch_size=500)


async def test_payment_events_before_their_invoice_are_parked_then_applied(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock, pay = Clock(), uuid.uuid4()
    pool = await projector_pool(database_url)
    try:
        # payments.events gets ahead of invoices: the payment refers to an invoice not seen yet.
        await publish(
            kafka_bootstrap,
            topics,
            [requested(clock, "A1", pay, [("INV-1", 10_000)]), checkout_opened(clock, "A1", pay)],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        parked = (await dump(pool, 1))["parked"]
        assert sorted(p["reason"] for p in parked) == [
            "unknown invoice INV-1 of account A1",
            f"unknown payment {pay}",
        ]
        assert await invoice_row(pool, "A1", "INV-1") is None

        await publish(
            kafka_bootstrap,
            topics,
            [synced(clock, "A1", "INV-1"), registered(clock, "A1", "INV-1")],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        row = await invoice_row(pool, "A1", "INV-1")
        assert row is not None
        assert (row["pay_status"], row["current_payment_state"]) == ("pending", "checkout_open")
        assert (await dump(pool, 1))["parked"] == []

        await publish(kafka_bootstrap, topics, [succeeded(clock, "A1", pay, [("INV-1", 10_000)])])
        await project_to_end(pool, topics, kafka_bootstrap)
        row = await invoice_row(pool, "A1", "INV-1")
        assert row is not None
        assert (row["pay_status"], row["balance_minor"]) == ("paid", 0)
    finally:
        await pool.close()


async def test_duplicates_and_replays_change_nothing(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock = Clock()
    story = account_story(clock, "A1") + account_story(clock, "A2")
    pool = await projector_pool(database_url)
    try:
        await publish(kafka_bootstrap, topics, story)
        await project_to_end(pool, topics, kafka_bootstrap)
        before = await dump(pool, 1)
        assert [r["pay_status"] for r in before["invoices"]][:3] == [
            "paid",
            "partially_paid",
            "pending",
        ]

        await publish(kafka_bootstrap, topics, story[::-1])  # every event again, same event ids
        await project_to_end(pool, topics, kafka_bootstrap)
        assert await dump(pool, 1) == before

        replayed = await ops.replay(_ctx(pool, topics, kafka_bootstrap), clock.now.replace(year=2000))
        assert replayed == 2 * len(story)
        assert await dump(pool, 1) == before
        # The rules made the copies harmless, not a dedupe record: the projector writes none.
        assert await pool.fetchval("SELECT count(*) FROM processed_events") == 0
    finally:
        await pool.close()


async def test_events_re_sent_after_newer_ones_end_in_the_same_rows_as_sent_once(
    kafka_bootstrap: str, postgres_url: str, topics: TopicRegistry
) -> None:
    """The relay's at-least-once re-send as it happens: a stretch of rows published again
    after later events of the same accounts (`A B C A B C D`), the copies landing in the
    same consumer batch as their originals and in later ones; some payments before their
    invoices so parking and its retry see copies too. The projector keeps no dedupe row,
    so the rows equal those of the same events sent once, projected on their own."""
    clock = Clock()
    stories = [account_story(clock, f"A{i}") for i in range(6)]
    payments = [e for s in stories for e in s if e.type.startswith("payment.")]
    invoices = [e for s in stories for e in s if e.type.startswith("invoice.")]
    # Three accounts' payments before their invoices (they park), three after.
    once = [*payments[:30], *invoices, *payments[30:]]
    re_sent = [
        *payments[:30],
        *payments[5:25],
        *invoices[:10],
        *payments[:8],
        *invoices[3:12],
        *invoices[10:],
    ]
    re_sent += [*payments[30:44], *payments[31:36], *payments[44:], *payments[33:36], *payments[41:45]]
    assert len(re_sent) == len(once) + 20 + 8 + 9 + 5 + 3 + 4

    copies = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka_bootstrap, copies)
    try:
        rows = []
        for registry, messages in ((topics, once), (copies, re_sent)):
            async with fresh_database(postgres_url) as url:
                pool = await projector_pool(url)
                try:
                    await publish(kafka_bootstrap, registry, messages)
                    await project_to_end(pool, registry, kafka_bootstrap, batch_size=16)
                    rows.append(await dump(pool, 1))
                    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 0
                finally:
                    await pool.close()
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(copies.desired()))
        finally:
            await admin.close()
    sent_once, sent_again = rows
    assert sent_once["parked"] == sent_again["parked"] == []
    assert len(sent_once["invoices"]) == 18
    assert sent_again == sent_once


async def test_impossible_transition_is_parked_with_its_reason(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock, pay = Clock(), uuid.uuid4()
    pool = await projector_pool(database_url)
    try:
        await publish(
            kafka_bootstrap,
            topics,
            [
                synced(clock, "A1", "INV-1"),
                registered(clock, "A1", "INV-1"),
                requested(clock, "A1", pay, [("INV-1", 10_000)]),
                succeeded(clock, "A1", pay, [("INV-1", 10_000)]),
                failed(clock, "A1", pay),
            ],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        parked = (await dump(pool, 1))["parked"]
        assert [(p["type"], p["reason"]) for p in parked] == [
            ("payment.failed", "impossible transition succeeded -> failed")
        ]
        row = await invoice_row(pool, "A1", "INV-1")
        assert row is not None
        assert row["pay_status"] == "paid"
    finally:
        await pool.close()


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing inside handles it."""


async def test_crash_mid_batch_then_resume_equals_a_clean_rebuild(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock = Clock()
    # Payments first, invoices after: parking and retries are part of what must survive.
    stories = [account_story(clock, f"A{i}") for i in range(40)]
    payments = [e for s in stories for e in s if e.type.startswith("payment.")]
    invoices = [e for s in stories for e in s if e.type.startswith("invoice.")]
    await publish(kafka_bootstrap, topics, payments)
    await publish(kafka_bootstrap, topics, invoices)
    pool = await projector_pool(database_url)
    try:
        tables = VersionTables(1)
        real = projecting(tables)
        batches = 0

        async def crashing(deliveries: Sequence[Delivery], tx: Transaction) -> None:
            nonlocal batches
            batches += 1
            await real(deliveries, tx)  # rows written in the open transaction...
            if batches == 3:
                raise Crash  # ...and the process dies before the offsets are stored

        starts, ends = await kafka_offsets(kafka_bootstrap, input_topics(topics))
        consumer = projection_consumer(
            name=tables.consumer,
            tables=tables,
            registry=topics,
            pool=pool,
            bootstrap=kafka_bootstrap,
            batch_size=40,
        )
        consumer._handle = crashing  # the same consumer, with a handler that dies mid-batch
        with pytest.raises(Crash):
            await asyncio.wait_for(run_until(consumer, pool, starts=starts, ends=ends), 60)
        assert batches == 3

        await project_to_end(pool, topics, kafka_bootstrap, batch_size=40)  # resume
        live = await dump(pool, 1)

        result = await ops.rebuild(_ctx(pool, topics, kafka_bootstrap))
        assert (result.version, result.previous) == (2, 1)
        assert await dump(pool, 2) == live
        assert live["parked"] == []
        assert len(live["invoices"]) == 120
    finally:
        await pool.close()


async def test_an_invoice_whose_erp_facts_change_in_later_batches_keeps_its_balance_right(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    """The path users take: the ERP changes the same invoice batch after batch (a payment
    posted, then another), not only its first sighting."""
    clock = Clock()
    pool = await projector_pool(database_url)
    try:
        await publish(
            kafka_bootstrap,
            topics,
            [synced(clock, "A1", "INV-1", total=10_000), registered(clock, "A1", "INV-1")],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        await publish(
            kafka_bootstrap,
            topics,
            [
                synced(
                    clock, "A1", "INV-1", total=10_000, open_amount=7_000, version=2, posted=[("P-1", 3_000)]
                )
            ],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        await publish(
            kafka_bootstrap,
            topics,
            [
                synced(
                    clock, "A1", "INV-1", total=10_000, open_amount=2_000, version=3,
                    posted=[("P-1", 3_000), ("P-2", 5_000)],
                )
            ],
        )  # fmt: skip
        await project_to_end(pool, topics, kafka_bootstrap)
        row = await invoice_row(pool, "A1", "INV-1")
        assert row is not None
        assert (row["open_amount_minor"], row["balance_minor"], row["pay_status"]) == (
            2_000,
            2_000,
            "partially_paid",
        )
        assert await _dead_letters(pool) == []
    finally:
        await pool.close()


async def _dead_letters(pool) -> list[str]:  # type: ignore[no-untyped-def]
    rows = await pool.fetch("SELECT headers FROM outbox WHERE topic LIKE '%.dlq'")
    return [r["headers"] for r in rows]
