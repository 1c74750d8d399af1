"""invoice-sync's handlers and registration worker against the in-memory unit of work:
what each ERP document and each provider answer leaves behind (invoices, the queued
provider call, what is published), in milliseconds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fakes.invoice_sync import FakeUnitOfWork

from invoice_sync.domain.registration import (
    Accepted,
    Intent,
    Outcome,
    Refused,
    RegistrationRequest,
    WithdrawalRequest,
)
from invoice_sync.handlers import apply_batch, on_provider_answers
from invoice_sync.unit_of_work import UnitOfWork
from invoice_sync.workers import RegistrationWorker
from payments_contracts import Envelope
from payments_contracts.erp import (
    ErpAccountSnapshot,
    ErpAccountSnapshotPayload,
    ErpInvoiceCancelled,
    ErpInvoiceCancelledPayload,
    ErpInvoiceDocument,
    ErpInvoiceUpserted,
)
from payments_platform.messaging import Delivery


def document(
    number: str, version: int = 1, *, total: str = "100.00", open_amount: str | None = None, **kw: Any
) -> ErpInvoiceDocument:
    return ErpInvoiceDocument(
        invoice_number=number,
        version=version,
        order_number=kw.pop("order_number", f"SO-{number}"),
        po_number=None,
        invoice_date=date(2026, 11, 1),
        due_date=date(2026, 12, 1),
        currency="USD",
        total=Decimal(total),
        open_amount=Decimal(open_amount if open_amount is not None else total),
        status=kw.pop("status", "open"),
        billing_country="US",
    )


def upserted(number: str, version: int = 1, **kw: Any) -> ErpInvoiceUpserted:
    return ErpInvoiceUpserted.originating(
        producer="erp", account_id="ACC-1", payload=document(number, version, **kw)
    )


def cancelled(number: str, version: int) -> ErpInvoiceCancelled:
    return ErpInvoiceCancelled.originating(
        producer="erp",
        account_id="ACC-1",
        payload=ErpInvoiceCancelledPayload(invoice_number=number, version=version),
    )


def snapshot(sequence: int, *docs: ErpInvoiceDocument) -> ErpAccountSnapshot:
    return ErpAccountSnapshot.originating(
        producer="erp",
        account_id="ACC-1",
        payload=ErpAccountSnapshotPayload(
            as_of=datetime.now(UTC) + timedelta(days=1), sequence=sequence, invoices=list(docs)
        ),
    )


async def apply(uow: FakeUnitOfWork, *messages: Envelope) -> None:
    await apply_batch([Delivery("erp.invoices", 0, n, m) for n, m in enumerate(messages)], uow)


def queued(uow: FakeUnitOfWork) -> dict[str, Intent]:
    return {number: q.intent for (_, number), q in uow.registrations.queued.items()}


async def test_a_new_invoice_is_announced_and_queued_for_registration_at_its_open_amount() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", total="100.00", open_amount="40.00"))
    [synced] = uow.of_type("invoice.synced")
    assert synced["payload"]["open_amount"] == {"amount_minor": 4000, "currency": "USD"}
    assert queued(uow) == {"INV-1": Intent("register", 1, 4000, "USD")}


async def test_an_older_version_changes_nothing_and_queues_nothing_new() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", 2, total="50.00"))
    await apply(uow, upserted("INV-1", 1, total="90.00"))
    assert len(uow.published) == 1
    assert queued(uow) == {"INV-1": Intent("register", 2, 5000, "USD")}


async def test_a_document_with_a_card_number_is_dead_lettered_and_the_batch_goes_on() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", order_number="4111 1111 1111 1111"), upserted("INV-2"))
    assert [(d.offset, reason) for d, reason in uow.rejected] == [(0, "card_number_in_document")]
    assert [e["payload"]["invoice_number"] for e in uow.published] == ["INV-2"]
    assert set(queued(uow)) == {"INV-2"}


async def test_a_cancelled_registered_invoice_is_closed_and_withdrawn() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1"))
    await record(uow, {"INV-1": Accepted("pi_1")})
    await apply(uow, cancelled("INV-1", 2))
    assert [e["payload"]["reason"] for e in uow.of_type("invoice.closed")] == ["cancelled"]
    assert queued(uow) == {"INV-1": Intent("withdraw", 2)}


async def test_a_snapshot_closes_the_open_invoices_it_no_longer_lists() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1"), upserted("INV-2"))
    await apply(uow, snapshot(1, document("INV-2")))
    assert [e["payload"]["invoice_number"] for e in uow.of_type("invoice.closed")] == ["INV-1"]
    assert set(queued(uow)) == {"INV-2"}  # INV-1 was never registered: nothing to withdraw


async def test_a_document_whose_event_the_broker_would_refuse_is_refused_whole_and_nothing_kept() -> None:
    uow = FakeUnitOfWork(event_limit=4_000)
    await apply(uow, upserted("INV-1"))
    long = "x" * 4_000
    await apply(
        uow,
        upserted("INV-2", order_number=long),
        snapshot(1, document("INV-3"), document("INV-4", order_number=long)),
        upserted("INV-5"),
    )
    assert [(d.offset, reason) for d, reason in uow.rejected] == [
        (0, "document_too_large"),
        (1, "document_too_large"),
    ]
    # Neither the document nor any part of the snapshot: INV-1 not closed, INV-3 not kept.
    assert sorted(number for _, number in uow.stored) == ["INV-1", "INV-5"]
    assert [e["payload"]["invoice_number"] for e in uow.of_type("invoice.synced")] == ["INV-1", "INV-5"]
    assert uow.of_type("invoice.closed") == []
    assert await uow.snapshots.sequence("ACC-1") is None


async def record(uow: FakeUnitOfWork, outcomes: dict[str, Outcome]) -> None:
    claimed = await uow.registrations.claim(100, 60.0)
    await on_provider_answers(
        [(p, outcomes[p.invoice_number]) for p in claimed if p.invoice_number in outcomes], uow
    )
    await uow.commit()


async def test_an_accepted_registration_of_the_current_amount_is_announced_and_settled() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", total="100.00"))
    await record(uow, {"INV-1": Accepted("pi_1")})
    [registered] = uow.of_type("invoice.registered")
    assert registered["payload"]["provider_invoice_id"] == "pi_1"
    assert registered["payload"]["amount"] == {"amount_minor": 10000, "currency": "USD"}
    assert queued(uow) == {}
    assert uow.stored[("ACC-1", "INV-1")].provider.registered_amount_minor == 10000


async def test_an_answer_about_an_amount_no_longer_open_is_kept_quiet_and_the_new_amount_asked() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", total="100.00"))
    claimed = await uow.registrations.claim(100, 60.0)
    await apply(uow, upserted("INV-1", 2, total="100.00", open_amount="30.00"))  # while the provider is asked
    await on_provider_answers([(claimed[0], Accepted("pi_1"))], uow)
    await uow.commit()
    assert uow.of_type("invoice.registered") == []
    assert queued(uow) == {"INV-1": Intent("register", 2, 3000, "USD")}


async def test_a_refusal_is_announced_and_not_asked_again_for_that_version() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1"))
    await record(uow, {"INV-1": Refused("invoice_refused", "no")})
    [failed] = uow.of_type("invoice.registration_failed")
    assert failed["payload"]["reason_code"] == "invoice_refused"
    assert queued(uow) == {}
    await apply(uow, upserted("INV-1", 2, total="80.00"))  # a new ERP version may be accepted
    assert queued(uow) == {"INV-1": Intent("register", 2, 8000, "USD")}


class Provider:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.asked: list[RegistrationRequest] = []

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        self.asked += requests
        return [self.outcome for _ in requests]

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]:
        return [self.outcome for _ in requests]


async def test_the_worker_asks_the_provider_and_records_the_answers_through_the_handler() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", total="12.50"), upserted("INV-2", total="7.00"))
    provider = Provider(Accepted("pi"))

    @asynccontextmanager
    async def units() -> AsyncIterator[UnitOfWork]:
        yield uow

    committed = []
    worker = RegistrationWorker(units, provider, on_commit=lambda: committed.append(True))
    assert await worker.run_once() == 2
    assert sorted((r.invoice_number, r.amount_minor) for r in provider.asked) == [
        ("INV-1", 1250),
        ("INV-2", 700),
    ]
    assert len(uow.of_type("invoice.registered")) == 2 and queued(uow) == {} and committed == [True]
    assert await worker.run_once() == 0


async def test_an_invoice_that_went_back_while_the_provider_was_asked_is_asked_again() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", total="100.00"))
    await record(uow, {"INV-1": Accepted("pi_1")})
    await apply(uow, upserted("INV-1", 2, total="100.00", open_amount="50.00"))
    [asked] = await uow.registrations.claim(100, 60.0)
    # Back to what the provider held: nothing to ask any more, the queued call is dropped.
    await apply(uow, upserted("INV-1", 3, total="100.00"))
    assert queued(uow) == {}
    await on_provider_answers([(asked, Accepted("pi_2"))], uow)  # it now holds 50.00
    await uow.commit()
    assert uow.of_type("invoice.registered")[1:] == []
    assert queued(uow) == {"INV-1": Intent("register", 3, 10000, "USD")}


async def test_an_answer_heard_twice_is_recorded_and_announced_once() -> None:
    uow = FakeUnitOfWork()
    await apply(uow, upserted("INV-1", total="10.00"))
    [asked] = await uow.registrations.claim(100, 0.0)
    for _ in range(2):  # two workers whose leases overlapped both heard the answer
        await on_provider_answers([(asked, Accepted("pi_1"))], uow)
        await uow.commit()
    assert len(uow.of_type("invoice.registered")) == 1 and queued(uow) == {}
