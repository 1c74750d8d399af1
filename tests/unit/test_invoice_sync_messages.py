"""Canonical events built by invoice-sync are valid contract messages, correlated to the
ERP document that caused them, serialised exactly as the contract models serialise."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import RFC_4122, UUID, uuid4

from pydantic import TypeAdapter

from invoice_sync.domain.mirror import BalanceChanged, Closed, Synced
from invoice_sync.domain.model import Invoice, InvoiceDetails, PostedPayment, ProviderState
from invoice_sync.domain.registration import Registered, RegistrationFailed
from invoice_sync.messages import Cause, Event, happened, new_event_id, registration_result
from payments_contracts import Envelope, InvoiceEvent

EVENTS: TypeAdapter[Envelope] = TypeAdapter(InvoiceEvent)


def invoice() -> Invoice:
    return Invoice(
        account_id="ACC-1",
        invoice_number="INV-1",
        erp_version=3,
        erp_status="open",
        details=InvoiceDetails(
            invoice_number="INV-1",
            order_number="SO-1",
            po_number=None,
            invoice_date=date(2026, 11, 1),
            due_date=date(2026, 12, 1),
            currency="JPY",
            total_minor=125000,
            open_minor=100000,
            billing_country="JP",
            posted_payments=(PostedPayment("PAY-1", 25000),),
        ),
        source_event_id=str(uuid4()),
        correlation_id=str(uuid4()),
        erp_occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        provider=ProviderState(100000, "JPY", "inv_1"),
    )


def roundtrip(event: Event) -> Envelope:
    """The event as a consumer decodes it; what the contract model writes back is the
    very same JSON (nothing lost, added or written differently)."""
    decoded = EVENTS.validate_json(event.body)
    assert decoded.model_dump_json().encode() == event.body
    assert (decoded.type, str(decoded.event_id), decoded.account_id) == (
        event.type,
        event.event_id,
        event.account_id,
    )
    return decoded


def test_every_event_kind_validates_against_its_contract() -> None:
    inv = invoice()
    cause = Cause("ACC-1", uuid4(), uuid4())
    built = [
        happened(Synced(inv), cause),
        happened(BalanceChanged(inv, 125000, "JPY"), cause),
        happened(Closed(inv, "missing_from_snapshot"), cause),
        registration_result(Registered(inv.payable, "inv_1", 100000)),
        registration_result(RegistrationFailed(inv.payable, 3, "blocked", "no")),
    ]
    for event in built:
        roundtrip(event)
    assert [e.type for e in built] == [
        "invoice.synced",
        "invoice.balance_changed",
        "invoice.closed",
        "invoice.registered",
        "invoice.registration_failed",
    ]
    assert len({e.event_id for e in built}) == 5


def test_synced_carries_the_whole_invoice_and_its_cause() -> None:
    inv = invoice()
    cause = Cause("ACC-1", uuid4(), uuid4())
    event = roundtrip(happened(Synced(inv), cause))
    payload = event.payload
    assert (event.correlation_id, event.causation_id) == (cause.correlation_id, cause.causation_id)
    assert payload.erp_version == 3
    assert payload.total.amount_minor == 125000
    assert payload.open_amount.currency == "JPY"
    assert payload.erp_status == "open"
    assert payload.billing_country == "JP"
    assert [(p.reference, p.amount.amount_minor) for p in payload.posted_payments] == [("PAY-1", 25000)]


def test_worker_events_are_correlated_to_the_document_stored_with_the_invoice() -> None:
    inv = invoice()
    event = roundtrip(registration_result(Registered(inv.payable, "inv_1", 100000)))
    assert str(event.correlation_id) == inv.correlation_id
    assert str(event.causation_id) == inv.source_event_id
    assert event.payload.amount.amount_minor == 100000


def test_event_ids_are_distinct_random_uuids_written_as_uuid_writes_them() -> None:
    ids = [new_event_id() for _ in range(3000)]  # more than one read of the random source
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, RFC_4122, text)
