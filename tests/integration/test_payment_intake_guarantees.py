"""The guarantees: one checkout under a race, one effect per repeated command or webhook."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import asyncpg
import pytest
from message_builders import pay_invoice
from payment_intake_support import running_intake, sign, until

from payment_intake.adapters.payment_repository import PostgresPaymentRepository
from payment_intake.adapters.schema import install
from payment_intake.adapters.unit_of_work import PostgresUnitOfWork
from payment_intake.domain.commands import KEY_REUSED, Answered, StoredCommand
from payment_intake.domain.payment import NewPayment
from payment_intake.domain.policy import MerchantPolicies
from payment_intake.messages import rejected, stored
from payment_intake.unit_of_work import IntakeConfig
from payments_contracts.topics import TopicRegistry
from payments_platform.messaging import Outbox, Transaction

pytestmark = pytest.mark.integration


async def test_200_concurrent_pay_commands_for_one_invoice_open_exactly_one_checkout(
    kafka_bootstrap, database_url, topics
):
    async with running_intake(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, topics=topics
    ) as intake:
        await intake.invoice("RACE", "INV-1", 9_900)
        commands = [pay_invoice("RACE", "INV-1", key=f"key-{i}") for i in range(200)]
        await asyncio.gather(*(intake.send(c) for c in commands))
        await until(
            lambda: all(intake.events.answers_to(c) for c in commands), timeout=30, what="200 answers"
        )
        answers = [intake.events.answers_to(c) for c in commands]
        assert all(len(a) == 1 for a in answers)  # every command answered exactly once
        requested = [a[0] for a in answers if a[0].type == "payment.requested"]
        rejected = [a[0] for a in answers if a[0].type == "payment.rejected"]
        assert len(requested) == 1
        assert len(rejected) == 199 and {r.payload.reason_code for r in rejected} == {"payment_pending"}
        await intake.event(requested[0].payload.payment_id, "payment.checkout_opened")
        checkouts = (await intake.sandbox("GET", "/sandbox/checkouts")).json()
        assert len(checkouts) == 1


def _payment(key: str, number: str) -> NewPayment:
    return NewPayment(
        uuid.uuid4(), "A", key, "invoice", "card", "USD", ((number, 100),), uuid.uuid4(), uuid.uuid4()
    )


def _answer(payment: NewPayment) -> Answered:
    return Answered("A", payment.idempotency_key, StoredCommand("f", "payment.requested", {}))


async def _open_one(repo: PostgresPaymentRepository) -> bool:
    """A run of one command."""
    payment = _payment(uuid.uuid4().hex, "INV-1")
    return await repo.write_run([payment], [_answer(payment)], ttl_s=60)


async def _open_in_run(repo: PostgresPaymentRepository) -> bool:
    """A run of two: a payment on another invoice, then the raced one."""
    key = uuid.uuid4().hex
    payments = [_payment(f"{key}-free", f"OTHER-{key}"), _payment(f"{key}-raced", "INV-1")]
    return await repo.write_run(payments, [_answer(p) for p in payments], ttl_s=60)


@pytest.mark.parametrize("open_", [_open_one, _open_in_run], ids=["one", "run"])
async def test_the_database_lets_only_one_of_two_racing_transactions_open_a_payment(database_url, open_):
    """The guarantee holds across partitions, batches and processes, not just in one run;
    a run that loses the race stores nothing of itself."""
    setup = await asyncpg.connect(database_url)
    await setup.execute("CREATE SCHEMA payment_intake; SET search_path TO payment_intake")
    await install(setup)
    await setup.close()
    conns = [
        await asyncpg.connect(database_url, server_settings={"search_path": "payment_intake"})
        for _ in range(2)
    ]
    barrier = asyncio.Event()

    async def attempt(conn: asyncpg.Connection) -> bool:
        async with conn.transaction():
            await barrier.wait()
            opened = await open_(PostgresPaymentRepository(conn))
            await asyncio.sleep(0.2)  # hold the transaction open so the other one must wait
            return opened

    try:
        tasks = [asyncio.create_task(attempt(c)) for c in conns]
        await asyncio.sleep(0.05)
        barrier.set()
        results = await asyncio.gather(*tasks)
        assert sorted(results) == [False, True]
        winners = 1 if open_ is _open_one else 2
        assert await conns[0].fetchval("SELECT count(*) FROM payments") == winners
        assert await conns[0].fetchval("SELECT count(*) FROM payment_allocations") == winners
    finally:
        for c in conns:
            await c.close()


async def test_the_same_command_delivered_50_times_has_one_effect(kafka_bootstrap, database_url, topics):
    async with running_intake(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, topics=topics
    ) as intake:
        await intake.invoice("DUP", "INV-1", 1_000)
        command = pay_invoice("DUP", "INV-1", key="same-key")
        await asyncio.gather(*(intake.send(command) for _ in range(50)))  # same event id
        repeats = [pay_invoice("DUP", "INV-1", key="same-key") for _ in range(5)]  # new ids, same key
        await asyncio.sleep(0)  # keep order: the original first on the partition
        await intake.send(*repeats)
        first = await intake.answer(command)
        for repeat in repeats:
            answer = await intake.answer(repeat)
            assert answer.type == "payment.requested"
            assert answer.payload.payment_id == first.payload.payment_id
            assert answer.payload.repeat_of == first.event_id
        reused = pay_invoice("DUP", "INV-1", key="same-key", amount=999)
        await intake.send(reused)
        assert (await intake.answer(reused)).payload.reason_code == "idempotency_key_reused"
        await intake.event(first.payload.payment_id, "payment.checkout_opened")
        assert len(intake.events.answers_to(command)) == 1
        assert len(intake.events.of_type("payment.requested")) == 1 + len(repeats)
        assert len(intake.events.of_type("payment.checkout_opened")) == 1
        checkouts = (await intake.sandbox("GET", "/sandbox/checkouts")).json()
        assert len(checkouts) == 1


async def test_the_same_webhook_50_times_out_of_order_has_one_effect(kafka_bootstrap, database_url, topics):
    async with running_intake(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, topics=topics
    ) as intake:
        await intake.invoice("WH", "INV-1", 1_000)
        command = pay_invoice("WH", "INV-1")
        await intake.send(command)
        payment_id = (await intake.answer(command)).payload.payment_id
        opened = await intake.event(payment_id, "payment.checkout_opened")
        data = {
            "checkout_id": opened.payload.checkout_id,
            "payment_id": str(payment_id),
            "account_id": "WH",
            "amount_minor": 1_000,
            "currency": "USD",
            "provider_payment_ref": "pay_1",
        }
        webhooks = []
        for kind in ("payment.processing", "payment.succeeded", "payment.failed"):
            body = json.dumps({"type": kind, "timestamp": "2026-01-01T00:00:00+00:00", "data": data})
            webhooks.append((f"msg_{kind}", body))
        deliveries = [w for w in webhooks for _ in range(50)]
        random.Random(7).shuffle(deliveries)
        responses = await asyncio.gather(
            *(
                intake.http.post(
                    intake.http_url + "/callbacks/provider", content=body, headers=sign(body, webhook_id=wid)
                )
                for wid, body in deliveries
            )
        )
        assert {r.status_code for r in responses} == {200}
        assert sum(r.json()["status"] == "accepted" for r in responses) == 3
        end = await until(
            lambda: [
                e
                for e in intake.events.for_payment(payment_id)
                if e.type in ("payment.succeeded", "payment.failed")
            ],
            what="an end state",
        )
        await until(lambda: _callbacks_logged(database_url, 3), what="three callbacks applied")
        ends = [
            e
            for e in intake.events.for_payment(payment_id)
            if e.type in ("payment.succeeded", "payment.failed")
        ]
        assert len(ends) == 1  # whichever came first wins; the other is late and changes nothing
        assert end[0].type in ("payment.succeeded", "payment.failed")
        assert len([e for e in intake.events.for_payment(payment_id) if e.type == "payment.processing"]) <= 1


async def _callbacks_logged(database_url: str, n: int) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM payment_intake.callback_log") >= n
    finally:
        await conn.close()


async def test_sandbox_duplicated_and_reordered_webhooks_have_one_effect(
    kafka_bootstrap, database_url, topics
):
    async with running_intake(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, topics=topics
    ) as intake:
        await intake.sandbox("PUT", "/sandbox/webhook-options", json={"duplicate": 5, "reorder": True})
        await intake.invoice("SBX", "INV-1", 1_000)
        command = pay_invoice("SBX", "INV-1")
        await intake.send(command)
        payment_id = (await intake.answer(command)).payload.payment_id
        opened = await intake.event(payment_id, "payment.checkout_opened")
        await intake.sandbox("POST", f"/sandbox/checkouts/{opened.payload.checkout_id}/complete")
        await intake.event(payment_id, "payment.succeeded")
        await until(lambda: _callbacks_logged(database_url, 2), what="both callbacks applied")
        events = intake.events.for_payment(payment_id)
        assert [e.type for e in events].count("payment.succeeded") == 1
        # succeeded arrived first (reordered), so the processing callback was late
        assert [e.type for e in events].count("payment.processing") == 0


async def test_an_answer_kept_under_its_key_is_its_event_id_and_payload_as_published(database_url):
    """The answer is serialized once: the outbox row's JSON, and the kept outcome taken from
    it in the statement, are the same answer."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA payment_intake; SET search_path TO payment_intake")
        await install(conn)
        command = pay_invoice("A", "INV-1", key="k-1")
        answer = rejected(command, "k-1", KEY_REUSED)
        plain = {"event_id": "e-2", "payload": {"nested": [1, None, "x"]}}
        outbox = Outbox(TopicRegistry("t."))
        async with conn.transaction():
            uow = PostgresUnitOfWork(
                Transaction(conn, outbox), IntakeConfig(MerchantPolicies.preset("full-payment-portal"))
            )
            assert await uow.payments.write_run(
                [],
                [
                    Answered("A", "k-1", stored("f1", answer)),
                    Answered("A", "k-2", StoredCommand("f2", "t", plain)),
                ],
                ttl_s=60,
            )
            uow.publish(answer)
        kept = await uow.commands.get_many([("A", "k-1"), ("A", "k-2")])
        assert dict(kept[("A", "k-1")].outcome) == {
            "event_id": str(answer.event_id),
            "payload": answer.payload.model_dump(mode="json"),
        }
        assert kept[("A", "k-2")].outcome == plain
        [row] = outbox.messages
        assert json.loads(row.value) == json.loads(answer.model_dump_json())
    finally:
        await conn.close()
