"""A second copy of any event changes nothing, wherever it lands.

The projector keeps no `processed_events` row per event: the outbox relay may publish
an event twice (at least once), and the copy lands after the original on the same
partition, possibly after later events of that account (`A B C A B C D`). These tests
deliver a story touching every rule, then the same story with each event repeated at
every later point (and a whole stretch repeated, as a relay re-sends a batch), and
require the very same read model.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from fakes.status_projector import FakeProjectionBatch
from integration.status_projector_support import (
    PRODUCER,
    Clock,
    checkout_opened,
    failed,
    registered,
    rejected,
    requested,
    restriction_changed,
    succeeded,
    synced,
    usd,
)

from payments_contracts import Envelope
from payments_contracts.invoices import (
    InvoiceBalanceChanged,
    InvoiceBalanceChangedPayload,
    InvoiceClosed,
    InvoiceClosedPayload,
    InvoiceRegistrationFailed,
    InvoiceRegistrationFailedPayload,
)
from payments_contracts.payments import (
    AccountBalancePaymentChanged,
    AccountBalancePaymentChangedPayload,
    PaymentCancelled,
    PaymentEndedPayload,
    PaymentExpired,
    PaymentFlagged,
    PaymentFlaggedPayload,
    PaymentProcessing,
    PaymentProcessingPayload,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentRefundRequested,
    RefundedPayload,
    RefundFailedPayload,
    RefundRequestedPayload,
)
from payments_platform.messaging import Delivery
from status_projector.handlers import apply_batch

ACC = "ACC-1"


def _event(cls: Any, clock: Clock, payload: Any) -> Envelope:
    return cls.originating(  # type: ignore[no-any-return]
        producer=PRODUCER, account_id=ACC, occurred_at=clock.tick(), payload=payload
    )


def story() -> list[Envelope]:
    """Every kind of event the projector applies, on four invoices and six payments,
    with a payment that arrives before its invoice (parked, then applied) and an
    impossible transition (parked for good)."""
    clock = Clock()
    p1, p2, p3, p4, p5, p6 = (uuid.uuid4() for _ in range(6))
    refund_id = uuid.uuid4()

    def ended(cls: Any, payment: uuid.UUID, reason: str) -> Envelope:
        return _event(
            cls, clock, PaymentEndedPayload(payment_id=payment, reason_code=reason, message="ended")
        )  # type: ignore[arg-type]

    return [
        _event(
            AccountBalancePaymentChanged,
            clock,
            AccountBalancePaymentChangedPayload(
                allowed=False,
                reason_code="account_balance_not_allowed",
                message="not here",  # type: ignore[arg-type]
            ),
        ),
        requested(clock, ACC, p5, [("INV-4", 3_000)]),  # before its invoice: parks
        checkout_opened(clock, ACC, p5),
        synced(clock, ACC, "INV-1"),
        registered(clock, ACC, "INV-1"),
        synced(clock, ACC, "INV-2", total=8_000),
        _event(
            InvoiceRegistrationFailed,
            clock,
            InvoiceRegistrationFailedPayload(
                invoice_number="INV-2", erp_version=1, reason_code="rejected", message="no"
            ),
        ),
        synced(clock, ACC, "INV-3", total=6_000),
        registered(clock, ACC, "INV-3"),
        synced(clock, ACC, "INV-4", total=3_000),
        registered(clock, ACC, "INV-4"),
        requested(clock, ACC, p1, [("INV-1", 10_000)]),
        checkout_opened(clock, ACC, p1),
        _event(PaymentProcessing, clock, PaymentProcessingPayload(payment_id=p1)),
        succeeded(clock, ACC, p1, [("INV-1", 10_000)]),
        failed(clock, ACC, p1),  # after a success: impossible, parked for good
        _event(
            PaymentFlagged,
            clock,
            PaymentFlaggedPayload(payment_id=p1, reason_code="amount_mismatch", message="look"),  # type: ignore[arg-type]
        ),
        _event(
            PaymentRefundRequested,
            clock,
            RefundRequestedPayload(
                payment_id=p1,
                refund_id=refund_id,
                amount=usd(10_000),
                invoice_numbers=["INV-1"],
                reason_code="double_payment",
                message="back",
                requested_by="policy",
            ),
        ),
        _event(
            PaymentRefunded,
            clock,
            RefundedPayload(
                payment_id=p1, refund_id=refund_id, amount=usd(10_000), invoice_numbers=["INV-1"]
            ),
        ),
        synced(clock, ACC, "INV-2", total=8_000, open_amount=5_000, version=2, posted=[("P-ERP", 3_000)]),
        registered(clock, ACC, "INV-2", version=2),
        _event(
            InvoiceBalanceChanged,
            clock,
            InvoiceBalanceChangedPayload(
                invoice_number="INV-2", erp_version=3, previous_open_amount=usd(5_000), open_amount=usd(4_000)
            ),
        ),
        requested(clock, ACC, p2, [("INV-2", 4_000)]),
        failed(clock, ACC, p2),
        requested(clock, ACC, p3, [("INV-2", 1_000)]),
        ended(PaymentCancelled, p3, "customer_cancelled"),
        requested(clock, ACC, p6, [("INV-2", 1_500), ("INV-3", 6_000)]),
        checkout_opened(clock, ACC, p6),
        succeeded(clock, ACC, p6, [("INV-2", 1_500), ("INV-3", 6_000)]),
        _event(
            PaymentRefundFailed,
            clock,
            RefundFailedPayload(
                payment_id=p6,
                refund_id=uuid.uuid4(),
                amount=usd(1_500),
                invoice_numbers=["INV-2"],
                reason_code="refund_declined",
                message="operator follows up",
            ),
        ),
        rejected(clock, ACC, ["INV-2"], reason="amount_above_balance"),
        restriction_changed(clock, ACC, "INV-3", restricted=True),
        requested(clock, ACC, p4, [("INV-3", 6_000)]),
        ended(PaymentExpired, p4, "checkout_expired"),
        restriction_changed(clock, ACC, "INV-3", restricted=False),
        _event(
            InvoiceClosed, clock, InvoiceClosedPayload(invoice_number="INV-4", erp_version=1, reason="closed")
        ),
        succeeded(clock, ACC, p5, [("INV-4", 3_000)]),
        _event(
            AccountBalancePaymentChanged,
            clock,
            AccountBalancePaymentChangedPayload(allowed=True),
        ),
    ]


async def project(events: Sequence[Envelope], batch_size: int = 1) -> dict[str, Any]:
    """The read model after `events`, delivered in batches of `batch_size` (one partition)."""
    batch = FakeProjectionBatch()
    deliveries = [Delivery("events", 0, n, m) for n, m in enumerate(events)]
    for start in range(0, len(deliveries), batch_size):
        await apply_batch(deliveries[start : start + batch_size], batch)
    return {
        "invoices": {k: dataclasses.asdict(v) for k, v in batch.invoices.items()},
        "payments": {k: dataclasses.asdict(v) for k, v in batch.payments.items()},
        "policies": dict(batch.policies),
        "parked": sorted((str(e.event_id), e.waits_for, e.reason) for e in batch.parked.values()),
        "last_event_at": batch.last_event_at,
    }


async def test_the_story_touches_every_rule() -> None:
    """The repeats below prove something only if the story reaches each state it should."""
    model = await project(story())
    invoices = model["invoices"]
    assert [(k[1], v["pay_status"].value, v["balance_minor"]) for k, v in sorted(invoices.items())] == [
        ("INV-1", "paid", 0),
        ("INV-2", "partially_paid", 2_500),
        ("INV-3", "paid", 0),
        ("INV-4", "paid", 0),
    ]
    assert invoices[(ACC, "INV-1")]["refund"]["state"] == "refunded"
    assert invoices[(ACC, "INV-1")]["refund"]["reason_code"] == "double_payment"
    assert invoices[(ACC, "INV-2")]["last_problem"]["reason_code"] == "amount_above_balance"
    assert invoices[(ACC, "INV-2")]["registration"] == "registered"
    assert invoices[(ACC, "INV-3")]["restriction"]["restricted"] is False
    assert invoices[(ACC, "INV-4")]["closed_reason"] == "closed"
    assert [p[2] for p in model["parked"]] == ["impossible transition succeeded -> failed"]
    assert model["policies"][ACC].balance_payment_allowed is True


async def test_a_repeat_of_any_event_at_any_later_point_changes_nothing() -> None:
    events = story()
    expected = await project(events)
    for i, event in enumerate(events):
        for j in range(i + 1, len(events) + 1):
            repeated = [*events[:j], event, *events[j:]]
            assert await project(repeated) == expected, f"event {i} ({event.type}) repeated after {j - 1}"


@pytest.mark.parametrize("batch_size", [1, 4, 50])
async def test_a_re_sent_stretch_of_events_changes_nothing(batch_size: int) -> None:
    """The relay re-sends a whole batch of rows: a stretch of events comes again after
    newer ones, in the same or a later consumer batch."""
    events = story()
    expected = await project(events)
    for start in range(0, len(events), 3):
        for end in range(start + 1, len(events) + 1, 5):
            for resume in (end, min(len(events), end + 4), len(events)):
                repeated = [*events[:resume], *events[start:end], *events[resume:]]
                assert await project(repeated, batch_size) == expected, (start, end, resume, batch_size)


async def test_a_repeat_with_a_later_time_would_be_noticed() -> None:
    """The comparison above is not blind: the same event under a new id and a later
    time (a new fact, not a copy) does change the read model."""
    events = story()
    expected = await project(events)
    late = events[3].model_copy(
        update={"event_id": uuid.uuid4(), "occurred_at": events[-1].occurred_at + timedelta(seconds=1)}
    )
    assert await project([*events, late]) != expected
