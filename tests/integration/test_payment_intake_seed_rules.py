"""Each seed rule, named, through the real service: Kafka in, PostgreSQL, Kafka out.

One intake per preset serves the module; every test uses its own account.
"""

from __future__ import annotations

import uuid

import pytest
from message_builders import pay_balance, pay_invoice, pay_selected, synced
from payment_intake_support import Intake, fresh_database, fresh_topics, running_intake, until

from payments_contracts.payments import CardOnline, PayerPortal, Remittance

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def seed000(kafka_bootstrap, postgres_url):
    async with fresh_database(postgres_url) as db:
        topics = await fresh_topics(kafka_bootstrap)
        async with running_intake(
            kafka_bootstrap=kafka_bootstrap, database_url=db, topics=topics, policy="full-payment-portal"
        ) as intake:
            yield intake


@pytest.fixture(scope="module")
async def seed003(kafka_bootstrap, postgres_url):
    async with fresh_database(postgres_url) as db:
        topics = await fresh_topics(kafka_bootstrap)
        async with running_intake(
            kafka_bootstrap=kafka_bootstrap, database_url=db, topics=topics, policy="partial-multi-portal"
        ) as intake:
            yield intake


def account() -> str:
    return f"ACC-{uuid.uuid4().hex[:8]}"


async def answer_to(intake: Intake, command):
    await intake.send(command)
    return await intake.answer(command)


CARD = CardOnline(name_on_card="Pat Payer")


# --- seed 000 -------------------------------------------------------------------------------


async def test_seed000_full_payment_only(seed000):
    acc = account()
    await seed000.invoice(acc, "INV-1", 125_000)
    partial = await answer_to(seed000, pay_invoice(acc, "INV-1", amount=100_000))
    assert (partial.type, partial.payload.reason_code) == ("payment.rejected", "partial_payment_not_allowed")
    full = await answer_to(seed000, pay_invoice(acc, "INV-1"))
    assert full.type == "payment.requested" and full.payload.total.amount_minor == 125_000


async def test_seed000_pending_blocks(seed000):
    acc = account()
    await seed000.invoice(acc, "INV-1", 5_000)
    first = await answer_to(seed000, pay_invoice(acc, "INV-1"))
    assert first.type == "payment.requested"
    second = await answer_to(seed000, pay_invoice(acc, "INV-1"))
    assert (second.type, second.payload.reason_code) == ("payment.rejected", "payment_pending")


async def test_seed000_not_registered_blocks(seed000):
    acc = account()
    await seed000.invoice(acc, "INV-1", 5_000, register=False)
    result = await answer_to(seed000, pay_invoice(acc, "INV-1"))
    assert (result.type, result.payload.reason_code) == ("payment.rejected", "invoice_not_registered")
    assert "not been sent for payment processing" in result.payload.message


async def test_seed000_several_invoices_not_allowed(seed000):
    acc = account()
    await seed000.invoice(acc, "INV-1", 5_000)
    await seed000.invoice(acc, "INV-2", 6_000)
    result = await answer_to(
        seed000, pay_selected(acc, [("INV-1", None), ("INV-2", None)], method=PayerPortal())
    )
    assert result.payload.reason_code == "several_invoices_not_allowed"


async def test_seed000_account_balance_payment_through_the_payer_portal(seed000):
    acc = account()
    await seed000.invoice(acc, "INV-1", 5_000)
    await seed000.invoice(acc, "INV-2", 6_000)
    result = await answer_to(seed000, pay_balance(acc, method=PayerPortal()))
    assert result.type == "payment.requested", result.payload
    assert result.payload.scope == "account_balance" and result.payload.method == "payer_portal"
    assert result.payload.total.amount_minor == 11_000
    opened = await seed000.event(result.payload.payment_id, "payment.checkout_opened")
    assert "/portal/" in opened.payload.checkout_url  # the provider's payer portal


async def test_seed000_invoice_of_another_account(seed000):
    owner, other = account(), account()
    await seed000.invoice(owner, "INV-X", 5_000)
    await seed000.invoice(other, "INV-Y", 5_000)
    result = await answer_to(seed000, pay_invoice(other, "INV-X"))
    assert result.payload.reason_code == "invoice_of_another_account"


async def test_seed000_zero_balance(seed000):
    acc = account()
    await seed000.invoice(acc, "INV-1", 0, total_minor=5_000)
    result = await answer_to(seed000, pay_invoice(acc, "INV-1"))
    assert result.payload.reason_code == "zero_balance"


# --- seed 003 -------------------------------------------------------------------------------


async def test_seed003_partial_up_to_the_balance(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-1", 125_000)
    result = await answer_to(seed003, pay_invoice(acc, "INV-1", amount=25_000, method=CARD))
    assert result.type == "payment.requested", result.payload
    assert result.payload.allocations[0].amount.amount_minor == 25_000


async def test_seed003_above_balance_error(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-1", 125_000)
    result = await answer_to(seed003, pay_invoice(acc, "INV-1", amount=125_001, method=CARD))
    assert result.payload.reason_code == "amount_above_balance"


async def test_seed003_multi_invoice_full_totals(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-1", 1_000)
    await seed003.invoice(acc, "INV-2", 2_000)
    partial = await answer_to(seed003, pay_selected(acc, [("INV-1", None), ("INV-2", 1_500)], method=CARD))
    assert partial.payload.reason_code == "must_pay_full_balance_of_each_invoice"
    full = await answer_to(seed003, pay_selected(acc, [("INV-1", None), ("INV-2", 2_000)], method=CARD))
    assert full.type == "payment.requested"
    assert full.payload.total.amount_minor == 3_000
    opened = await seed003.event(full.payload.payment_id, "payment.checkout_opened")
    assert opened.payload.checkout_id


async def test_seed003_distributor_countries(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-JP", 1_000, country="JP")
    result = await answer_to(seed003, pay_invoice(acc, "INV-JP", method=CARD))
    assert result.payload.reason_code == "pay_through_distributor"
    us = account()
    await seed003.invoice(us, "INV-US", 1_000, country="US")
    assert (await answer_to(seed003, pay_invoice(us, "INV-US", method=CARD))).type == "payment.requested"


async def test_seed003_restriction_is_announced_when_it_starts_and_ends(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-JP", 1_000, country="JP")

    def announced() -> list:
        return [
            e
            for e in seed003.events.of_type("payment.invoice_restriction_changed")
            if e.account_id == acc and e.payload.invoice_number == "INV-JP"
        ]

    [started] = await until(announced, what="restriction announced")
    assert (started.payload.restricted, started.payload.reason_code) == (True, "pay_through_distributor")
    rejected = await answer_to(seed003, pay_invoice(acc, "INV-JP", method=CARD))
    assert rejected.payload.message == started.payload.message
    # The same version again, and a newer one in another distributor country: no news.
    await seed003.send(
        synced(acc, "INV-JP", 1_000, country="JP"), synced(acc, "INV-JP", 1_000, country="DE", version=2)
    )
    await seed003.send(synced(acc, "INV-JP", 1_000, country="US", version=3))
    await until(lambda: len(announced()) >= 2, what="restriction lifted")
    await seed003.facts_applied(acc, "INV-JP", version=3, registered=False)
    # Same partition, in order: everything sent before the lift was applied before it.
    assert [e.payload.restricted for e in announced()] == [True, False]
    assert announced()[1].payload.reason_code is None
    assert (await answer_to(seed003, pay_invoice(acc, "INV-JP", method=CARD))).type == "payment.requested"


async def test_seed003_account_balance_not_offered(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-1", 1_000)
    result = await answer_to(seed003, pay_balance(acc, method=CARD))
    assert result.payload.reason_code == "account_balance_not_allowed"


async def test_seed003_remittance_answers_with_details_and_opens_no_payment(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-1", 1_000)
    command = pay_invoice(acc, "INV-1", key=f"remit-{acc}", method=Remittance(channel="wire"))
    result = await answer_to(seed003, command)
    assert result.type == "payment.remittance_instructions"
    assert result.payload.channel == "wire" and "INV-1" in result.payload.reference
    assert "INV-1" in result.payload.message
    again = await answer_to(
        seed003, pay_invoice(acc, "INV-1", key=f"remit-{acc}", method=Remittance(channel="wire"))
    )
    assert again.type == "payment.remittance_instructions" and again.payload.repeat_of == result.event_id
    card = await answer_to(seed003, pay_invoice(acc, "INV-1", method=CARD))
    assert card.type == "payment.requested"  # nothing was left pending by the remittance answer


async def test_seed003_method_not_allowed(seed003):
    acc = account()
    await seed003.invoice(acc, "INV-1", 1_000)
    result = await answer_to(seed003, pay_invoice(acc, "INV-1", method=PayerPortal()))
    assert result.payload.reason_code == "method_not_allowed"
