"""Pay and cancel commands through the handlers and the in-memory unit of work: one pay
algorithm, a single command being a run of one."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fakes.payment_intake import Allocation, FakeIntake, Store
from message_builders import cancel, pay_invoice, registered, synced

from payment_intake.domain.payment import PaymentStatus
from payment_intake.handlers import CardNumberInEnvelope, handle, refuse_card_numbers_in_envelope
from payment_intake.handlers.pay import on_pay
from payments_contracts import Envelope


async def intake_with_invoices(*numbers: str, account: str = "C1", minor: int = 10_000) -> FakeIntake:
    intake = FakeIntake()
    async with intake.unit() as uow:
        for n in numbers:
            await handle([synced(account, n, minor), registered(account, n, minor)], uow)
    intake.published.clear()
    return intake


async def consume(intake: FakeIntake, *messages: Envelope) -> list[Envelope]:
    """One consumed batch; what it published."""
    before = len(intake.published)
    async with intake.unit() as uow:
        await handle(list(messages), uow)
    return intake.published[before:]


async def test_a_single_pay_command_opens_a_requested_payment_and_answers_once() -> None:
    intake = await intake_with_invoices("INV-1")
    command = pay_invoice("C1", "INV-1", key="k1")
    [answer] = await consume(intake, command)
    assert answer.type == "payment.requested"
    assert answer.causation_id == command.event_id
    [row] = intake.store.payments.values()
    assert row.payment.status is PaymentStatus.REQUESTED
    assert row.payment.allocations == (("INV-1", 10_000),)
    assert row.payment.payment_id == answer.payload.payment_id
    assert intake.store.commands[("C1", "k1")].outcome_type == "payment.requested"


async def test_a_repeated_key_gets_the_first_answer_again_and_another_content_is_refused() -> None:
    intake = await intake_with_invoices("INV-1")
    [first] = await consume(intake, pay_invoice("C1", "INV-1", key="k1"))
    [again] = await consume(intake, pay_invoice("C1", "INV-1", key="k1"))
    assert again.type == "payment.requested"
    assert again.payload.payment_id == first.payload.payment_id
    assert again.payload.repeat_of == first.event_id
    [misuse] = await consume(intake, pay_invoice("C1", "INV-1", key="k1", amount=5_000))
    assert misuse.type == "payment.rejected"
    assert misuse.payload.reason_code == "idempotency_key_reused"
    assert len(intake.store.payments) == 1


async def test_a_run_decides_in_order_each_command_seeing_the_earlier_ones() -> None:
    intake = await intake_with_invoices("INV-1", "INV-2")
    run = [
        pay_invoice("C1", "INV-1", key="a"),
        pay_invoice("C1", "INV-1", key="b"),  # INV-1 is pending from the first command on
        pay_invoice("C1", "INV-1", key="a"),  # the first command's key again: its answer
        pay_invoice("C1", "INV-2", key="c"),
    ]
    answers = await consume(intake, *run)
    assert [a.type for a in answers] == [
        "payment.requested",
        "payment.rejected",
        "payment.requested",
        "payment.requested",
    ]
    assert answers[1].payload.reason_code == "payment_pending"
    assert answers[2].payload.repeat_of == answers[0].event_id
    assert len(intake.store.payments) == 2
    assert intake.store.runs_written == 1  # decided in memory, not by the unique index


async def test_a_run_answers_as_its_commands_would_one_by_one() -> None:
    commands = [pay_invoice("C1", n, key=k) for n, k in [("INV-1", "a"), ("INV-1", "b"), ("NOPE", "c")]]
    together = await intake_with_invoices("INV-1")
    one_by_one = await intake_with_invoices("INV-1")
    as_run = await consume(together, *commands)
    singly = [a for c in commands for a in await consume(one_by_one, c)]
    assert [(a.type, a.payload.model_dump().get("reason_code")) for a in as_run] == [
        (a.type, a.payload.model_dump().get("reason_code")) for a in singly
    ]


def another_consumer_opens(number: str) -> Callable[[Store], None]:
    """A payment on `number` committed by another consumer after the run read its facts."""

    def race(store: Store) -> None:
        store.allocations.append(Allocation(uuid.uuid4(), "C1", number, 10_000))

    return race


async def test_a_run_that_lost_an_invoice_to_another_consumer_is_answered_one_by_one() -> None:
    intake = await intake_with_invoices("INV-1", "INV-2")
    intake.store.before_write = another_consumer_opens("INV-1")
    answers = await consume(intake, pay_invoice("C1", "INV-1", key="a"), pay_invoice("C1", "INV-2", key="b"))
    assert [a.type for a in answers] == ["payment.rejected", "payment.requested"]
    assert answers[0].payload.reason_code == "payment_pending"
    assert answers[0].payload.invoice_numbers == ["INV-1"]
    assert [r.payment.allocations for r in intake.store.payments.values()] == [(("INV-2", 10_000),)]
    assert intake.store.runs_written == 3  # the run, then each command as a run of one


async def test_a_run_of_one_that_lost_its_invoice_is_answered_pending() -> None:
    intake = await intake_with_invoices("INV-1")
    intake.store.before_write = another_consumer_opens("INV-1")
    async with intake.unit() as uow:
        await on_pay([pay_invoice("C1", "INV-1", key="a")], uow)
    [answer] = intake.published
    assert answer.payload.reason_code == "payment_pending"
    assert intake.store.commands[("C1", "a")].outcome_type == "payment.rejected"
    assert intake.store.payments == {}


async def test_a_pay_command_with_a_card_number_is_refused_and_nothing_of_it_is_kept() -> None:
    intake = await intake_with_invoices("INV-1")
    card = "4111 1111 1111 1111"
    [answer] = await consume(intake, pay_invoice("C1", "INV-1", key=f"key {card}"))
    assert answer.type == "payment.rejected"
    assert answer.payload.reason_code == "card_number_in_input"
    assert card not in answer.model_dump_json()
    [(_, key)] = intake.store.commands
    assert card not in key
    [again] = await consume(intake, pay_invoice("C1", "INV-1", key=f"key {card}"))
    assert again.payload.reason_code == "card_number_in_input"
    assert intake.store.payments == {}


async def test_a_customer_cancels_an_open_checkout_once() -> None:
    intake = await intake_with_invoices("INV-1")
    [requested] = await consume(intake, pay_invoice("C1", "INV-1"))
    payment_id = requested.payload.payment_id
    [cancelled] = await consume(intake, cancel("C1", payment_id, key="c1"))
    assert cancelled.type == "payment.cancelled"
    row = intake.store.payments[payment_id]
    assert row.payment.status is PaymentStatus.CANCELLED
    assert row.cancel_state == "due"  # the provider worker cancels the checkout too
    [repeat] = await consume(intake, cancel("C1", payment_id, key="c1"))
    assert repeat.type == "payment.cancelled" and repeat.event_id != cancelled.event_id
    [late] = await consume(intake, cancel("C1", payment_id, key="c2"))
    assert late.payload.reason_code == "cannot_cancel"
    [unknown] = await consume(intake, cancel("C2", payment_id))
    assert unknown.payload.reason_code == "unknown_payment"


def test_a_card_number_in_a_command_header_is_named_by_field_never_by_value() -> None:
    clean = pay_invoice("C1", "INV-1")
    refuse_card_numbers_in_envelope(clean)
    carded = clean.model_copy(update={"producer": "portal 4111 1111 1111 1111"})
    with pytest.raises(CardNumberInEnvelope) as refused:
        refuse_card_numbers_in_envelope(carded)
    assert "producer" in str(refused.value) and "4111" not in str(refused.value)
