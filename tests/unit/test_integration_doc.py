"""docs/integration.md is whole and true. Whole: every message type an integrating team
produces or reads (erp.invoices, invoices, payments.commands, payments.events) and every
route of the read API and the webhook endpoint has a section naming it, a field list
covering every payload field or parameter, and an example; every pay status and
not-payable reason is explained; every payment method has an example. True: every
message validates against its JSON Schema and decodes with our models, every HTTP answer
and request matches its OpenAPI schema, the webhook example's signature verifies, the
dead-letter headers match the AsyncAPI document, the merchant file parses as the
services parse it, and the message flow's ids link as the rules say."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import typing
from functools import cache
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from contract.documents import (
    CONTRACTS,
    INTEGRATION_DOC,
    dead_letter_problems,
    doc_blocks,
    doc_messages,
    message_problems,
    message_schemas,
    openapi,
    topic_of_type,
)
from pydantic import TypeAdapter
from standardwebhooks.webhooks import Webhook

from payment_intake.domain.policy import MerchantPolicies
from payments_contracts import ErpInvoiceMessage, InvoiceEvent, PaymentCommand, PaymentEvent
from payments_contracts.payments import PaymentMethod
from payments_contracts.webhooks import ProviderWebhook
from payments_platform.merchants import parse_merchant_file
from payments_platform.provider_credentials import SANDBOX_STRIPE_WEBHOOK_SECRET
from payments_platform.sandbox import SANDBOX_WEBHOOK_SECRET

DECODER = TypeAdapter(ErpInvoiceMessage | InvoiceEvent | PaymentCommand | PaymentEvent)
TEAM_TOPICS = ("erp.invoices", "invoices", "payments.commands", "payments.events")
APIS = ("status-projector", "payment-intake")


@cache
def sections() -> list[tuple[str, str]]:
    """(heading, text up to the next heading) of every heading of the guide."""
    parts = re.split(r"^(#{1,4} .*)$", INTEGRATION_DOC.read_text(), flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def section_of(name: str) -> str:
    """The one section whose heading names `name` in backticks."""
    found = [text for heading, text in sections() if f"`{name}`" in heading]
    assert len(found) == 1, f"docs/integration.md has {len(found)} sections headed `{name}`"
    return found[0]


def listed_fields(text: str) -> set[str]:
    """Names a field list describes: `- `a`, `b`: what they are` (an item may wrap, or be
    nested under another)."""
    items = re.findall(r"^ *- (.*?)(?=^ *- |^\S|^$|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return {name for item in items if ": " in item for name in re.findall(r"`([^`]+)`", item.split(": ")[0])}


def blocks_in(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(\S[^\n]*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def payload_fields(message_type: str) -> set[str]:
    schema = message_schemas()[message_type]
    payload = schema["properties"]["payload"]
    if "$ref" in payload:
        payload = schema["$defs"][payload["$ref"].rsplit("/", 1)[1]]
    return set(payload["properties"])


def team_message_types() -> list[str]:
    return sorted(t for t, topic in topic_of_type().items() if topic in TEAM_TOPICS)


@cache
def operations() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(api, METHOD, path, operation) of every route of the read API and the webhook endpoint."""
    found = []
    for api in APIS:
        spec = json.loads((CONTRACTS / "openapi" / f"{api}.json").read_text())
        for path, methods in spec["paths"].items():
            found += [(api, method.upper(), path, operation) for method, operation in methods.items()]
    return found


@pytest.mark.parametrize("message_type", team_message_types())
def test_every_message_type_has_a_section_with_its_fields_and_an_example(message_type: str) -> None:
    text = section_of(message_type)
    missing = payload_fields(message_type) - listed_fields(text)
    assert not missing, f"the section of {message_type} does not describe {sorted(missing)}"
    examples = [json.loads(body) for info, body in blocks_in(text) if info == "json message"]
    assert message_type in {e["type"] for e in examples}, f"the section of {message_type} has no example"


def test_every_payment_method_has_an_example() -> None:
    kinds = {m.model_fields["kind"].default for m in typing.get_args(typing.get_args(PaymentMethod)[0])}
    shown = {
        message["payload"]["method"]["kind"]
        for info, text in doc_blocks()
        if info == "json message" and isinstance((message := json.loads(text))["payload"].get("method"), dict)
    }
    assert kinds <= shown, f"no example pays by {sorted(kinds - shown)}"


@pytest.mark.parametrize(("api", "method", "path", "operation"), operations(), ids=lambda v: str(v)[:60])
def test_every_route_has_a_section_with_its_parameters_and_an_example(
    api: str, method: str, path: str, operation: dict[str, Any]
) -> None:
    text = section_of(f"{method} {path}")
    parameters = {p["name"] for p in operation.get("parameters", [])}
    missing = parameters - listed_fields(text)
    assert not missing, f"the section of {method} {path} does not describe {sorted(missing)}"
    kinds = {info for info, _ in blocks_in(text)}
    answers = {f"json http:{api}:{path}:{method.lower()}:{status}" for status in operation["responses"]}
    assert {k for k in kinds & answers if k.split(":")[-1].startswith("2")}, (
        f"no 2xx example of {method} {path}"
    )
    if "requestBody" in operation:
        assert any(k.endswith(f"-request:{api}:{path}:{method.lower()}") for k in kinds), (
            f"no request of {path}"
        )


def test_every_pay_status_and_reason_is_explained() -> None:
    schemas = openapi("status-projector").raw_schema["components"]["schemas"]
    text = next(t for heading, t in sections() if heading.startswith("### Pay status"))
    values = set(schemas["PayStatus"]["enum"]) | set(schemas["NotPayableReason"]["enum"])
    missing = values - listed_fields(text)
    assert not missing, f"the Pay status section does not explain {sorted(missing)}"


def test_the_stripe_event_request_is_signed_as_documented_and_matches_the_contract() -> None:
    [(info, text)] = [(i, t) for i, t in doc_blocks() if i.startswith("http stripe-request:")]
    _, api, path, method = info.split(":")
    head, body = text.split("\n\n", 1)
    body = body.rstrip("\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    timestamp, signature = (part.split("=", 1)[1] for part in headers["Stripe-Signature"].split(","))
    signed = f"{timestamp}.{body}".encode()
    expected = hmac.new(SANDBOX_STRIPE_WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert signature == expected
    spec = openapi(api).raw_schema
    schema = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    jsonschema.validate(json.loads(body), {**schema, "components": spec["components"]})


def test_the_webhook_request_is_signed_as_documented_and_matches_the_contract() -> None:
    [(info, text)] = [(i, t) for i, t in doc_blocks() if i.startswith("http webhook-request:")]
    _, api, path, method = info.split(":")
    head, body = text.split("\n\n", 1)
    request_line, *header_lines = head.splitlines()
    assert request_line == f"{method.upper()} {path} HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in header_lines)
    sent = datetime.datetime.fromtimestamp(int(headers["webhook-timestamp"]), datetime.UTC)
    signature = Webhook(SANDBOX_WEBHOOK_SECRET).sign(headers["webhook-id"], sent, body)
    assert headers["webhook-signature"] == signature
    ProviderWebhook.model_validate_json(body)
    spec = openapi(api).raw_schema
    schema = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    jsonschema.validate(json.loads(body), {**schema, "components": spec["components"]})


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
