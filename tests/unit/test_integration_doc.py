"""docs/integration.md's examples are true: every message validates against its JSON
Schema and decodes with our models, every HTTP answer matches its OpenAPI schema, the
dead-letter headers match the AsyncAPI document, the merchant file parses as the
services parse it, and the message flow's ids link as the rules say."""

from __future__ import annotations

import datetime
import json

import httpx
import yaml
from contract.documents import dead_letter_problems, doc_blocks, doc_messages, message_problems, openapi
from pydantic import TypeAdapter

from payment_intake.domain.policy import MerchantPolicies
from payments_contracts import ErpInvoiceMessage, PaymentCommand, PaymentEvent
from payments_platform.merchants import parse_merchant_file

DECODER = TypeAdapter(ErpInvoiceMessage | PaymentCommand | PaymentEvent)


def test_the_guide_has_examples_of_every_kind() -> None:
    kinds = {info.split(":")[0] for info, _ in doc_blocks()}
    assert {"json message", "json dlq-headers", "json http", "yaml merchant-file"} <= kinds
    assert {"erp.invoice.upserted", "payment.pay_invoice", "payment.remittance_instructions"} <= set(
        doc_messages()
    )


def test_every_message_in_the_guide_matches_its_schema_and_our_models() -> None:
    for info, text in doc_blocks():
        if info != "json message":
            continue
        assert message_problems(text.encode()) == [], text[:200]
        assert DECODER.validate_json(text).type == json.loads(text)["type"]


def test_every_http_answer_in_the_guide_matches_the_openapi_document() -> None:
    for info, text in doc_blocks():
        if not info.startswith("json http:"):
            continue
        _, api, path, method, status = info.split(":")
        response = httpx.Response(
            int(status),
            content=text.encode(),
            headers={"content-type": "application/json"},
            request=httpx.Request(method.upper(), "http://x" + path),
        )
        response.elapsed = datetime.timedelta(0)
        openapi(api)[path][method.upper()].validate_response(response)


def test_the_dead_letter_headers_in_the_guide_match_the_asyncapi_document() -> None:
    for info, text in doc_blocks():
        if info == "json dlq-headers":
            assert dead_letter_problems("invoice-sync", json.loads(text)) == []


def test_the_merchant_file_in_the_guide_is_one_the_services_accept() -> None:
    [text] = [t for info, t in doc_blocks() if info == "yaml merchant-file"]
    config = yaml.safe_load(text)
    merchants = parse_merchant_file(config)
    assert merchants.merchant_of("A-20077") == "northwind-labs"
    policies = MerchantPolicies.from_config(config)
    assert policies.accepts("A-20077") and not policies.accepts("C-unknown")
    remittance = policies.remittance_for("A-20077")
    assert remittance is not None and remittance.channels() == ["check", "wire"]


def test_the_message_flow_links_as_the_rules_say() -> None:
    shown = doc_messages()
    command = shown["payment.pay_invoice"]
    for answer in ("payment.requested", "payment.checkout_opened"):
        assert shown[answer]["causation_id"] == command["event_id"]
        assert shown[answer]["correlation_id"] == command["correlation_id"]
    payment_id = shown["payment.requested"]["payload"]["payment_id"]
    assert shown["payment.succeeded"]["payload"]["payment_id"] == payment_id
    upserts = [
        json.loads(t) for i, t in doc_blocks() if i == "json message" and '"erp.invoice.upserted"' in t
    ]
    posted = [p for u in upserts for p in u["payload"]["posted_payments"]]
    assert [p["reference"] for p in posted] == [payment_id]
    remittance = shown["payment.remittance_instructions"]
    assert remittance["causation_id"] == shown["payment.pay_selected_invoices"]["event_id"]
