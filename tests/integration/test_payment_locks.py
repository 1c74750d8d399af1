"""A payment locked to decide on it is read as it is once the lock is held, not as it
was when the statement began: the checkout opener waits for a webhook's transaction on
the same payment, and must then see what that transaction made of it. Read stale, it
moved a succeeded payment back to `checkout_open`, and status sync announced the
success a second time (found by make chaos)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from database_tools import fresh_database
from payment_intake.adapters import schema
from payment_intake.adapters.unit_of_work import units as postgres_units
from payment_intake.domain.payment import NewPayment, PaymentStatus
from payment_intake.domain.policy import MerchantPolicies
from payment_intake.unit_of_work import IntakeConfig
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool

pytestmark = pytest.mark.integration

CONFIG = IntakeConfig(MerchantPolicies.preset("partial-multi-portal"))


async def test_a_payment_locked_after_another_transaction_changed_it_reads_the_change(
    postgres_url: str,
) -> None:
    async with fresh_database(postgres_url) as url:
        pool = await open_pool(url, "payment_intake", size=3, install=schema.install)
        units = postgres_units(pool, TopicRegistry("locks."), CONFIG, on_published=lambda: None)
        try:
            payment = NewPayment(
                payment_id=uuid.uuid4(),
                account_id="ACC-LOCK",
                idempotency_key="k-1",
                scope="invoice",
                method="card_online",
                currency="USD",
                allocations=(("INV-1", 500),),
                command_event_id=uuid.uuid4(),
                correlation_id=uuid.uuid4(),
            )
            async with units() as uow:
                assert await uow.payments.write_run([payment], [], ttl_s=900)

            webhook_holds_the_lock = asyncio.Event()
            release = asyncio.Event()

            async def webhook() -> None:
                async with units() as uow:
                    locked = await uow.payments.get_for_update(payment.payment_id)
                    assert locked is not None
                    await uow.payments.move(payment.payment_id, PaymentStatus.SUCCEEDED)
                    webhook_holds_the_lock.set()
                    await release.wait()

            async def opener() -> PaymentStatus:
                await webhook_holds_the_lock.wait()
                async with units() as uow:
                    [seen] = await uow.payments.get_many_for_update([payment.payment_id])
                    return seen.status

            committing = asyncio.create_task(webhook())
            reading = asyncio.create_task(opener())
            await webhook_holds_the_lock.wait()
            await asyncio.sleep(0.3)  # the opener's statement has begun and waits for the lock
            assert not reading.done()
            release.set()
            await committing
            assert await reading == PaymentStatus.SUCCEEDED
        finally:
            await pool.close()
