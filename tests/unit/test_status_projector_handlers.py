"""status-projector's handlers against the in-memory unit of work: what each event does
to the read model, parking and its retry, in milliseconds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from fakes.status_projector import FakeProjectionBatch
from integration.status_projector_support import (
    Clock,
    checkout_opened,
    failed,
    registered,
    rejected,
    requested,
    succeeded,
    synced,
)

from payments_contracts import Envelope
from payments_platform.messaging import Delivery
from status_projector.domain.model import invoice_key
from status_projector.domain.status import PaymentState, PayStatus
from status_projector.handlers import apply_batch

ACC = "ACC-1"


async def batch(model: FakeProjectionBatch, messages: Sequence[Envelope]) -> None:
    await apply_batch([Delivery("events", 0, n, m) for n, m in enumerate(messages)], model)


def status(model: FakeProjectionBatch, number: str = "INV-1") -> tuple[PayStatus, int]:
    invoice = model.invoices[(ACC, number)]
    return invoice.pay_status, invoice.balance_minor


async def test_a_registered_invoice_is_payable_and_an_older_version_changes_nothing() -> None:
    clock, model = Clock(), FakeProjectionBatch()
    first = [synced(clock, ACC, "INV-1", total=10_000, version=2), registered(clock, ACC, "INV-1")]
    await batch(model, first)
    assert status(model) == (PayStatus.PAYABLE, 10_000)
    await batch(model, [synced(clock, ACC, "INV-1", total=99_000, version=1)])
    assert status(model) == (PayStatus.PAYABLE, 10_000)
    assert model.last_event_at == clock.now


async def test_a_payment_before_its_invoice_parks_and_applies_when_the_invoice_appears() -> None:
    clock, model = Clock(), FakeProjectionBatch()
    payment = uuid.uuid4()
    await batch(model, [requested(clock, ACC, payment, [("INV-1", 4_000)])])
    assert [e.waits_for for e in model.parked.values()] == [invoice_key(ACC, "INV-1")]
    await batch(model, [synced(clock, ACC, "INV-1"), registered(clock, ACC, "INV-1")])
    assert model.parked == {}
    assert status(model) == (PayStatus.PENDING, 10_000)
    assert model.payments[str(payment)].state is PaymentState.REQUESTED


async def test_invoice_events_of_a_batch_apply_before_its_payment_events() -> None:
    clock, model = Clock(), FakeProjectionBatch()
    parks: list[str] = []
    park = model.park
    model.park = lambda message, position, why: (parks.append(why.waits_for), park(message, position, why))  # type: ignore[method-assign]
    first = requested(clock, ACC, uuid.uuid4(), [("INV-1", 4_000)])
    await batch(model, [first, synced(clock, ACC, "INV-1"), registered(clock, ACC, "INV-1")])
    assert parks == [] and status(model) == (PayStatus.PENDING, 10_000)


async def test_a_success_pays_the_invoice_and_a_replayed_older_event_changes_nothing() -> None:
    clock, model = Clock(), FakeProjectionBatch()
    payment = uuid.uuid4()
    await batch(model, [synced(clock, ACC, "INV-1", total=10_000), registered(clock, ACC, "INV-1")])
    opened = checkout_opened(clock, ACC, payment)
    await batch(model, [requested(clock, ACC, payment, [("INV-1", 4_000)]), opened])
    await batch(model, [succeeded(clock, ACC, payment, [("INV-1", 4_000)])])
    assert status(model) == (PayStatus.PARTIALLY_PAID, 6_000)
    await batch(model, [opened])
    assert model.payments[str(payment)].state is PaymentState.SUCCEEDED
    assert status(model) == (PayStatus.PARTIALLY_PAID, 6_000)


async def test_a_failed_payment_leaves_its_reason_and_the_invoice_payable_again() -> None:
    clock, model = Clock(), FakeProjectionBatch()
    payment = uuid.uuid4()
    await batch(model, [synced(clock, ACC, "INV-1"), registered(clock, ACC, "INV-1")])
    await batch(model, [requested(clock, ACC, payment, [("INV-1", 10_000)])])
    await batch(model, [failed(clock, ACC, payment, reason="payment_failed")])
    invoice = model.invoices[(ACC, "INV-1")]
    assert invoice.last_problem is not None and invoice.last_problem.reason_code == "payment_failed"
    assert status(model) == (PayStatus.PAYABLE, 10_000)


async def test_a_rejection_of_an_unknown_invoice_parks_until_it_appears() -> None:
    clock, model = Clock(), FakeProjectionBatch()
    await batch(model, [rejected(clock, ACC, ["INV-1"], reason="payment_pending")])
    assert len(model.parked) == 1
    await batch(model, [synced(clock, ACC, "INV-1")])
    problem = model.invoices[(ACC, "INV-1")].last_problem
    assert model.parked == {} and problem is not None and problem.reason_code == "payment_pending"
