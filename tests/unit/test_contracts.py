"""Event contracts: envelope behaviour, topic routing, and committed schemas in sync."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from payments_contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted
from payments_contracts.invoices import InvoiceClosed, InvoiceClosedPayload
from payments_contracts.topics import TopicRegistry
from payments_platform.documents import drift, generated_files

ROOT = Path(__file__).resolve().parents[2]


def erp_message() -> ErpInvoiceUpserted:
    return ErpInvoiceUpserted.originating(
        producer="erp",
        account_id="ACC-1",
        payload=ErpInvoiceDocument(
            invoice_number="INV-1",
            version=3,
            invoice_date=date(2026, 4, 1),
            due_date=date(2026, 5, 1),
            currency="USD",
            total=Decimal("1250.00"),
            open_amount=Decimal("1250.00"),
            billing_country="US",
        ),
    )


def test_an_originating_message_correlates_to_itself() -> None:
    m = erp_message()
    assert m.correlation_id == m.event_id and m.causation_id is None


def test_a_following_message_carries_correlation_causation_and_account() -> None:
    cause = erp_message()
    effect = InvoiceClosed.following(
        cause,
        producer="invoice-sync",
        payload=InvoiceClosedPayload(invoice_number="INV-1", erp_version=3, reason="cancelled"),
    )
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.event_id
    assert effect.account_id == "ACC-1" and effect.key() == b"ACC-1"


def test_messages_round_trip_through_their_topic_decoder() -> None:
    registry = TopicRegistry()
    m = erp_message()
    decoded = registry.erp_invoices.decoder.validate_json(m.model_dump_json())
    assert decoded == m and type(decoded) is ErpInvoiceUpserted


def test_unknown_types_and_missing_fields_fail_to_decode() -> None:
    decoder = TopicRegistry().erp_invoices.decoder
    with pytest.raises(ValidationError):
        decoder.validate_json(b'{"type": "erp.invoice.deleted"}')
    body = erp_message().model_dump(mode="json")
    del body["payload"]["due_date"]
    with pytest.raises(ValidationError, match="due_date"):
        decoder.validate_python(body)


def test_each_message_type_travels_on_exactly_one_topic() -> None:
    registry = TopicRegistry(prefix="x.")
    assert registry.for_message(erp_message()).name == "x.erp.invoices"
    seen: dict[str, str] = {}
    for topic in registry.all:
        for model in topic.message_types():
            type_name = model.model_fields["type"].default
            assert type_name not in seen, f"{type_name} on {seen.get(type_name)} and {topic.name}"
            seen[type_name] = topic.name


def test_every_topic_has_a_dead_letter_topic() -> None:
    desired = TopicRegistry().desired()
    for topic in TopicRegistry().all:
        assert topic.dead_letter in desired


def test_committed_json_schemas_and_asyncapi_documents_are_up_to_date() -> None:
    problems = drift(ROOT / "contracts", generated_files())
    assert not problems, "\n".join(problems) + "\nrun `make contracts` and commit the result"
