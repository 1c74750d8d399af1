"""What the committed contracts promise, checked without infrastructure: examples valid,
reason codes complete, money as decimal strings, dead-letter headers and HTTP answers
documented, remittance details and merchant assignment as the contracts state them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
from contract.documents import asyncapi, build, message_problems, message_schemas, openapi
from pydantic import TypeAdapter, ValidationError

from payment_intake.domain.intake import Accepted
from payment_intake.domain.policy import MerchantPolicies
from payment_intake.domain.rejections import Reason
from payment_intake.domain.remittance import answer_remittance, details_for
from payments_contracts import ErpInvoiceMessage, PaymentCommand
from payments_contracts.examples import EXAMPLES
from payments_contracts.reasons import RejectionReason
from payments_contracts.remittance import RemittanceDetails
from payments_contracts.topics import SERVICE_CHANNELS
from payments_platform.merchants import WatchedMerchantFile
from payments_platform.messaging.dead_letter import Position, dead_letter

DECODERS = {
    "erp.invoices": TypeAdapter(ErpInvoiceMessage),
    "payments.commands": TypeAdapter(PaymentCommand),
}
REMITTANCE = {
    "check": {
        "payee": "Northwind Labs Inc.",
        "mailing_address": {
            "name": "Northwind AR",
            "line1": "PO Box 7701",
            "city": "Chicago",
            "region": "IL",
            "postal_code": "60680",
            "country": "US",
        },
    },
    "ach": {
        "bank_name": "First Demo Bank",
        "account_name": "Northwind Labs Inc.",
        "account_number": "000123456789",
        "routing_number": "021000021",
    },
}


@pytest.mark.parametrize("message_type", sorted(EXAMPLES))
def test_every_example_matches_its_schema_and_our_model(message_type: str) -> None:
    example = message_schemas()[message_type]["examples"][0]
    assert message_problems(json.dumps(example).encode()) == []
    topic = "erp.invoices" if message_type.startswith("erp.") else "payments.commands"
    assert DECODERS[topic].validate_json(json.dumps(example)).type == message_type


def test_every_envelope_requires_its_header() -> None:
    for message_type, schema in message_schemas().items():
        assert {"event_id", "type", "occurred_at", "schema_version"} <= set(schema["required"]), message_type


def test_an_erp_amount_as_a_json_number_is_refused_by_schema_and_service_alike() -> None:
    message = build("erp.invoice.upserted")
    message["payload"]["open_amount"] = 1250.0
    assert any("string" in p for p in message_problems(json.dumps(message).encode()))
    with pytest.raises(ValidationError, match="decimal string in major units"):
        DECODERS["erp.invoices"].validate_json(json.dumps(message))


def test_posted_payment_reference_states_the_payment_id_rule() -> None:
    text = json.dumps(message_schemas()["erp.invoice.upserted"])
    assert "our `payment_id` from payment.succeeded" in text


def test_payment_intake_sends_only_codes_of_the_rejection_enum_and_each_has_a_message() -> None:
    assert {r.value for r in Reason} == {r.value for r in RejectionReason}
    schema = message_schemas()["payment.rejected"]
    codes = schema["$defs"]["RejectionReason"]["oneOf"]
    assert {c["const"] for c in codes} == {r.value for r in Reason}
    assert all(c["description"] for c in codes)


def test_a_dead_letter_carries_the_headers_the_asyncapi_documents() -> None:
    letter = dead_letter(
        Position("erp.invoices", 2, 41), b"C-1", b'{"total": 1250.0}', service="invoice-sync", error="bad"
    )
    for service, roles in SERVICE_CHANNELS.items():
        channels = asyncapi(service)["channels"]
        for topic in roles["receives"]:
            assert topic.dead_letter.replace(".", "_") in channels, (service, topic.name)
    schema = asyncapi("invoice-sync")["components"]["messages"]["DeadLetter"]["headers"]
    jsonschema.validate(letter.headers, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in letter.headers.items() if k != "dlq.error"}, schema)


def test_the_webhook_endpoint_documents_every_answer() -> None:
    operation = openapi("payment-intake")["/callbacks/provider"]["POST"]
    assert {"200", "400", "401", "408", "409", "413"} <= set(operation.definition.raw["responses"])


def test_the_asyncapi_description_of_payments_events_is_whole() -> None:
    description = asyncapi("payment-intake")["channels"]["payments_events"]["description"]
    assert "..." not in description and "remittance instructions" in description


def _accepted() -> Accepted:
    return Accepted("selected_invoices", "remittance", "USD", (("INV-1", 50_000), ("INV-2", 30_000)))


def test_remittance_answers_with_the_chosen_channels_details() -> None:
    details = RemittanceDetails.model_validate(REMITTANCE)
    check = answer_remittance(_accepted(), "check", "C-1", details, "800.00 USD")
    ach = answer_remittance(_accepted(), "ach", "C-1", details, "800.00 USD")
    wire = answer_remittance(_accepted(), "wire", "C-1", details, "800.00 USD")
    assert getattr(check, "reference", None) == "C-1 INV-1 INV-2"
    assert "payable to Northwind Labs Inc." in check.message and "PO Box 7701" in check.message
    assert "routing number 021000021" in ach.message and "000123456789" in ach.message
    assert getattr(wire, "reason", None) is Reason.METHOD_NOT_ALLOWED  # this merchant takes no wires


def test_without_configured_details_the_policy_payee_is_named() -> None:
    policies = MerchantPolicies.preset("partial-multi-portal")
    details = details_for(policies.for_account("C-1"), policies.remittance_for("C-1"))
    answer = answer_remittance(_accepted(), "wire", "C-1", details, "800.00 USD", configured=False)
    assert "Accounts Receivable" in answer.message and "ask Accounts Receivable" in answer.message


def test_an_account_no_merchant_lists_is_refused_unless_the_file_names_a_default() -> None:
    strict = MerchantPolicies.from_config(
        {"merchants": {"m": {"accounts": ["C-1"], "remittance": REMITTANCE}}}
    )
    assert strict.accepts("C-1") and not strict.accepts("C-2")
    assert strict.remittance_for("C-1") is not None and strict.remittance_for("C-2") is None
    lenient = MerchantPolicies.from_config({"default": "full-payment-portal", "merchants": {}})
    assert lenient.accepts("C-2")
    assert MerchantPolicies.preset("full-payment-portal").accepts("anyone")


def test_the_merchant_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "merchants.json"
    path.write_text(json.dumps({"merchants": {"m": {"accounts": ["C-1"]}}}))
    watch = WatchedMerchantFile(path, lambda f: f.merchant_of("C-2"), interval_s=0.0)
    assert watch.current() is None
    time.sleep(0.01)
    path.write_text(json.dumps({"merchants": {"m": {"accounts": ["C-1", "C-2"]}}}))
    assert watch.current() == "m"
    path.write_text("merchants: [unbalanced")
    assert watch.current() == "m"  # a broken edit keeps the last good file
