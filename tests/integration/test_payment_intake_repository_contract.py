"""One contract for payment-intake's repositories, run against the in-memory fake the
handler unit tests use and against PostgreSQL: the fake cannot drift from the SQL
without a test here failing on one side.

Each test works through units of work exactly as handlers and workers do (`async with
units() as uow`), and states a rule the handlers rely on: a stale ERP version changes
nothing, an invoice has one open payment and a key one answer, a claim leases what it
returns, a refund is asked once per payment, a webhook id counts once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import pytest
from fakes.payment_intake import FakeIntake

from database_tools import fresh_database
from payment_intake.adapters import schema
from payment_intake.adapters.unit_of_work import units as postgres_units
from payment_intake.domain.commands import Answered, StoredCommand
from payment_intake.domain.payment import NewPayment, PaymentStatus
from payment_intake.domain.policy import MerchantPolicies
from payment_intake.unit_of_work import IntakeConfig, InvoiceVersion, UnitOfWork
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool

pytestmark = pytest.mark.integration


class Units(Protocol):
    def __call__(self) -> AbstractAsyncContextManager[UnitOfWork]: ...


CONFIG = IntakeConfig(MerchantPolicies.preset("partial-multi-portal"))


@pytest.fixture(params=["fake", "postgres"])
async def units(request: pytest.FixtureRequest, postgres_url: str) -> AsyncIterator[Units]:
    if request.param == "fake":
        yield FakeIntake(CONFIG.policies).unit
        return
    async with fresh_database(postgres_url) as url:
        pool = await open_pool(url, "payment_intake", size=2, install=schema.install)
        try:
            yield postgres_units(pool, TopicRegistry("contract."), CONFIG, on_published=lambda: None)
        finally:
            await pool.close()


def account() -> str:
    return f"ACC-{uuid.uuid4().hex[:8]}"


def version(erp_version: int, open_minor: int = 1_000) -> InvoiceVersion:
    return InvoiceVersion(
        erp_version=erp_version,
        currency="USD",
        total_minor=1_000,
        open_amount_minor=open_minor,
        erp_status="open",
        billing_country="US",
        posted_refs=[],
        restricted=False,
    )


def new_payment(acc: str, *invoices: str, key: str | None = None) -> NewPayment:
    return NewPayment(
        payment_id=uuid.uuid4(),
        account_id=acc,
        idempotency_key=key or uuid.uuid4().hex,
        scope="invoice",
        method="card_online",
        currency="USD",
        allocations=tuple((number, 500) for number in invoices),
        command_event_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
    )


def answer_to(payment: NewPayment) -> Answered:
    outcome: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "payload": {"payment_id": str(payment.payment_id)},
    }
    return Answered(
        payment.account_id, payment.idempotency_key, StoredCommand("f" * 64, "payment.requested", outcome)
    )


async def opened(units: Units, acc: str, *invoices: str, ttl_s: int = 900) -> NewPayment:
    payment = new_payment(acc, *invoices)
    async with units() as uow:
        assert await uow.payments.write_run([payment], [answer_to(payment)], ttl_s=ttl_s)
    return payment


async def test_a_newer_erp_version_applies_and_an_older_or_equal_one_changes_nothing(units: Units) -> None:
    acc = account()
    async with units() as uow:
        assert await uow.invoices.synced(acc, "INV-1", version(2)) is False
        assert await uow.invoices.synced(acc, "INV-1", version(2, open_minor=7)) is None
        assert await uow.invoices.synced(acc, "INV-1", version(1, open_minor=7)) is None
        await uow.invoices.registration(acc, "INV-1", erp_version=2, registered=True)
        views = await uow.invoices.account_views([(acc, ["INV-1"])])
    facts = views[acc].invoices["INV-1"]
    assert facts.open_amount_minor == 1_000
    assert facts.registered


async def test_an_invoice_has_one_open_payment_and_a_key_one_answer(units: Units) -> None:
    acc = account()
    first = await opened(units, acc, "INV-1")
    async with units() as uow:
        on_the_same_invoice = new_payment(acc, "INV-1")
        assert not await uow.payments.write_run(
            [on_the_same_invoice], [answer_to(on_the_same_invoice)], ttl_s=900
        )
        same_key = new_payment(acc, "INV-2", key=first.idempotency_key)
        assert not await uow.payments.write_run([same_key], [answer_to(same_key)], ttl_s=900)
        assert await uow.payments.get_for_update(on_the_same_invoice.payment_id) is None
        assert await uow.payments.get_for_update(same_key.payment_id) is None
        stored = await uow.commands.get_many([(acc, first.idempotency_key)])
    assert stored[(acc, first.idempotency_key)].outcome_type == "payment.requested"


async def test_a_payment_reads_back_as_written_and_an_ended_one_frees_its_invoices(units: Units) -> None:
    acc = account()
    first = await opened(units, acc, "INV-1", "INV-2")
    async with units() as uow:
        payment = await uow.payments.get_for_update(first.payment_id)
        assert payment is not None
        assert payment.status is PaymentStatus.REQUESTED
        assert payment.total_minor == 1_000
        assert sorted(payment.allocations) == [("INV-1", 500), ("INV-2", 500)]
        assert await uow.payments.account_of(first.payment_id) == acc
        await uow.payments.move(first.payment_id, PaymentStatus.FAILED, reason="card_declined")
    second = await opened(units, acc, "INV-1")
    async with units() as uow:
        await uow.payments.move(second.payment_id, PaymentStatus.SUCCEEDED, checkout_id="cs_1")
        third = new_payment(acc, "INV-1")
        assert await uow.payments.write_run([third], [answer_to(third)], ttl_s=900)
        paid = await uow.payments.get_for_update(third.payment_id)
        assert paid is not None
        assert await uow.payments.invoices_paid_by_others(paid)


async def test_a_checkout_to_open_is_claimed_once_until_its_lease_ends(units: Units) -> None:
    payment = await opened(units, account(), "INV-1")
    async with units() as uow:
        claimed = await uow.checkouts.claim_to_open(batch_size=100, lease_s=60)
    assert [p.payment_id for p in claimed] == [payment.payment_id]
    assert claimed[0].open_attempts == 1
    async with units() as uow:
        assert payment.payment_id not in [
            p.payment_id for p in await uow.checkouts.claim_to_open(batch_size=100, lease_s=60)
        ]
        await uow.checkouts.open_later(payment.payment_id, 0)
    async with units() as uow:
        again = await uow.checkouts.claim_to_open(batch_size=100, lease_s=60)
    assert [(p.payment_id, p.open_attempts) for p in again] == [(payment.payment_id, 2)]


async def test_an_opened_checkout_leaves_the_open_queue(units: Units) -> None:
    payment = await opened(units, account(), "INV-1")
    async with units() as uow:
        await uow.payments.checkouts_opened([(payment.payment_id, "cs_1", "https://pay.example/cs_1")])
        await uow.checkouts.open_later(payment.payment_id, 0)
    async with units() as uow:
        assert payment.payment_id not in [
            p.payment_id for p in await uow.checkouts.claim_to_open(batch_size=100, lease_s=60)
        ]
        moved = await uow.payments.get_for_update(payment.payment_id)
    assert moved is not None and moved.status is PaymentStatus.CHECKOUT_OPEN and moved.checkout_id == "cs_1"


async def test_only_payments_past_their_time_limit_are_expiring(units: Units) -> None:
    acc = account()
    past = await opened(units, acc, "INV-1", ttl_s=0)
    within = await opened(units, acc, "INV-2", ttl_s=900)
    async with units() as uow:
        expiring = [p.payment_id for p in await uow.checkouts.expiring(batch_size=100)]
    assert past.payment_id in expiring
    assert within.payment_id not in expiring


async def test_status_sync_asks_about_open_checkouts_only_and_counts_its_attempts(units: Units) -> None:
    acc = account()
    waiting = await opened(units, acc, "INV-1")
    no_checkout = await opened(units, acc, "INV-2")
    async with units() as uow:
        await uow.payments.checkouts_opened([(waiting.payment_id, "cs_1", "https://pay.example/cs_1")])
    ids = [waiting.payment_id, no_checkout.payment_id]
    async with units() as uow:
        claimed = await uow.checkouts.claim_to_sync(
            batch_size=10, older_than_s=0, lease_s=60, payment_ids=ids
        )
    assert [(c.payment_id, c.checkout_id, c.attempts) for c in claimed] == [(waiting.payment_id, "cs_1", 1)]
    async with units() as uow:
        await uow.payments.flag(waiting.payment_id, "amount_mismatch")
        flagged = await uow.checkouts.claim_to_sync(
            batch_size=10, older_than_s=0, lease_s=60, payment_ids=ids
        )
    assert flagged == []


async def test_a_cancel_at_the_provider_is_claimed_until_it_is_done(units: Units) -> None:
    payment = await opened(units, account(), "INV-1")
    async with units() as uow:
        await uow.payments.checkouts_opened([(payment.payment_id, "cs_1", "https://pay.example/cs_1")])
        await uow.checkouts.cancel_at_provider(payment.payment_id)
    async with units() as uow:
        claimed = await uow.checkouts.claim_to_cancel(batch_size=10, lease_s=60)
        assert [(c.payment_id, c.attempts) for c in claimed] == [(payment.payment_id, 1)]
        assert await uow.checkouts.claim_to_cancel(batch_size=10, lease_s=60) == []
        await uow.checkouts.cancel_later(payment.payment_id, 0)
    async with units() as uow:
        assert [c.attempts for c in await uow.checkouts.claim_to_cancel(batch_size=10, lease_s=60)] == [2]
        await uow.checkouts.cancel_done(payment.payment_id, "done")
        await uow.checkouts.cancel_at_provider(payment.payment_id)
    async with units() as uow:
        assert await uow.checkouts.claim_to_cancel(batch_size=10, lease_s=60) == []


async def test_a_payment_is_refunded_once_and_a_failed_refund_can_be_asked_again(units: Units) -> None:
    acc = account()
    payment = await opened(units, acc, "INV-1")
    refund_id, again_id = uuid.uuid4(), uuid.uuid4()
    request = {"payment_id": payment.payment_id, "account_id": acc, "amount_minor": 500, "currency": "USD"}
    async with units() as uow:
        await uow.payments.move(payment.payment_id, PaymentStatus.SUCCEEDED, checkout_id="cs_1")
        assert await uow.refunds.request(
            refund_id=refund_id, reason_code="paid_twice", requested_by="test", **request
        )
        assert not await uow.refunds.request(
            refund_id=uuid.uuid4(), reason_code="paid_twice", requested_by="test", **request
        )
    async with units() as uow:
        claimed = await uow.refunds.claim(batch_size=10, lease_s=60)
        assert [(r.refund_id, r.checkout_id, r.attempts) for r in claimed] == [(refund_id, "cs_1", 1)]
        assert await uow.refunds.claim(batch_size=10, lease_s=60) == []
        assert not await uow.refunds.reopen_failed(payment.payment_id, again_id, "operator")
        await uow.refunds.settle(refund_id, "failed", failure="declined")
    async with units() as uow:
        assert await uow.refunds.reopen_failed(payment.payment_id, again_id, "operator")
        reopened = await uow.refunds.get_for_update(again_id)
    assert reopened is not None and reopened.status == "requested" and reopened.requested_by == "operator"


async def test_a_webhook_id_counts_once(units: Units) -> None:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    async with units() as uow:
        assert await uow.webhooks.first_receipt(webhook_id)
    async with units() as uow:
        assert not await uow.webhooks.first_receipt(webhook_id)


async def test_a_unit_that_raises_leaves_nothing_behind(units: Units) -> None:
    payment = new_payment(account(), "INV-1")

    async def failing_batch() -> None:
        async with units() as uow:
            assert await uow.payments.write_run([payment], [answer_to(payment)], ttl_s=900)
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        await failing_batch()
    async with units() as uow:
        assert await uow.payments.get_for_update(payment.payment_id) is None
