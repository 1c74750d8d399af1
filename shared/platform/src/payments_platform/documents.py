"""The committed documents other teams build against, generated from code: the JSON
Schemas (one per message) and AsyncAPI documents (one per service) of the contracts
here, and `CommittedDocument`, the one writer and drift check every service's own
document (OpenAPI of an HTTP API, FastStream's AsyncAPI) goes through. `--check` fails
when a committed file drifts from the code."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from payments_contracts.examples import EXAMPLES
from payments_contracts.topics import DEAD_LETTER_POLICY, SERVICE_CHANNELS, TOPICS, Topic
from payments_contracts.webhooks import ProviderWebhook, StripeEvent, WebhookAccepted, WebhookRefused

VERSION = "1.0.0"
# Editable installs only: the documents are committed beside the code they come from.
CONTRACTS = Path(__file__).resolve().parents[4] / "contracts"


@dataclass(frozen=True)
class CommittedDocument:
    """One generated document committed under contracts/: `make contracts` writes it,
    a unit test fails when it drifts from the code that renders it."""

    path: Path
    render: Callable[[], str]
    regenerate: str  # the command that writes it, for the drift message

    def is_stale(self, target: Path | None = None) -> bool:
        target = target or self.path
        return not target.exists() or target.read_text() != self.render()

    def write(self, target: Path | None = None) -> Path:
        target = target or self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.render())
        return target

    def main(self, argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(description=f"Write (or --check) {self.path.name}")
        parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
        if parser.parse_args(argv).check:
            if self.is_stale():
                print(f"{self.path} is stale; run {self.regenerate}", file=sys.stderr)
                raise SystemExit(1)
            return
        print(f"wrote {self.write()}")


def openapi_json(app: FastAPI) -> str:
    """An app's OpenAPI document as committed: stable key order, one trailing newline."""
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    return json.dumps(document, indent=2, sort_keys=True) + "\n"

AT_LEAST_ONCE = (
    "Delivery is at least once: a message can appear more than once with the same event_id "
    "(an outbox relay that stopped after the broker acknowledged a batch, before deleting its "
    "rows, or an upstream producer's retry), possibly after later messages of its key. A "
    "repeat is byte-for-byte the same message. Every consumer must dedupe by event_id; a new "
    "event_id is a new fact, never a repeat."
)


CROSS_MESSAGE_RULES = (
    "Rules across messages: (1) correlation_id is the id of the command, ERP document or "
    "provider callback that started a chain; causation_id the event_id of the message that "
    "directly caused this one. (2) Every pay command gets exactly one answer with "
    "causation_id = its event_id: payment.requested, payment.rejected or "
    "payment.remittance_instructions (cancel_checkout: payment.cancelled or payment.rejected); "
    "payment.checkout_opened also has causation_id = the command's event_id but is the next "
    "step, not the answer. (3) When the ERP posts a payment made through us, "
    "posted_payments[].reference is our payment_id. (4) An account's merchant is decided by the "
    "merchant file (PAYMENTS_MERCHANT_CONFIG); a pay command for an account no merchant lists is "
    "rejected with account_without_merchant unless the file names a default policy."
)


def message_types(topic: Topic) -> list[type[BaseModel]]:
    return list(topic.message_types())


def _type_name(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


def json_schemas() -> dict[str, str]:
    files: dict[str, str] = {}
    for topic in TOPICS:
        for model in message_types(topic):
            schema = model.model_json_schema()
            schema["$id"] = f"urn:payments:{topic.name}:{_type_name(model)}"
            if _type_name(model) in EXAMPLES:
                schema["examples"] = [EXAMPLES[_type_name(model)]]
            files[f"schemas/{topic.name}/{_type_name(model)}.json"] = (
                json.dumps(schema, indent=2, sort_keys=True) + "\n"
            )
    return files


def _channel(topic: Topic) -> dict[str, Any]:
    return {
        "address": topic.name,
        "description": (
            f"{topic.description} Keyed by account id. Retention: {topic.retention_reason}"
            f" Dead letters: {topic.dead_letter}. " + AT_LEAST_ONCE
        ),
        "messages": {
            m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in message_types(topic)
        },
        "bindings": {
            "kafka": {
                "partitions": topic.partitions,
                "topicConfiguration": {
                    "cleanup.policy": [topic.cleanup_policy],
                    "retention.ms": topic.retention_ms,
                },
            }
        },
    }


DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "Kafka headers (UTF-8 strings) of every dead letter.",
    "required": [
        "dlq.error",
        "dlq.source.topic",
        "dlq.source.partition",
        "dlq.source.offset",
        "dlq.service",
        "dlq.body.bytes",
    ],
    "properties": {
        "dlq.error": {
            "type": "string",
            "maxLength": 2000,
            "description": "Why the message can never be processed: the decode or validation error "
            "(e.g. `ValidationError: ... an ERP amount is a decimal string ...`) or the handler's "
            "refusal, card numbers masked.",
        },
        "dlq.reason": {
            "type": "string",
            "description": "A stable code when the service has one (invoice-sync's ERP checks: "
            "unknown_currency, invalid_amount, negative_amount, too_many_decimals, "
            "amount_out_of_range, duplicate_invoice_in_snapshot, card_number_in_input, ...).",
        },
        "dlq.source.topic": {"type": "string", "description": "The topic the message was read from"},
        "dlq.source.partition": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq.source.offset": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq.service": {"type": "string", "description": "The service that refused it"},
        "dlq.body.bytes": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Size of the redacted body before any truncation",
        },
        "dlq.body.sha256": {
            "type": "string",
            "description": "Digest of the whole redacted body, when truncated",
        },
        "dlq.body.truncated": {
            "const": "true",
            "description": "Present when only the first 256 KiB are kept",
        },
    },
}


def _dead_letter_channel(topic: Topic, service: str) -> dict[str, Any]:
    return {
        "address": topic.dead_letter,
        "description": (
            f"Messages of `{topic.name}` that {service} can never process (not JSON, not UTF-8, "
            "fails its schema, unknown type, a business refusal such as an ERP document with a "
            "JSON number as an amount). The body is the original bytes with anything that looks "
            "like a card number replaced by `[REDACTED]` (bytes that are not UTF-8 pass "
            "unchanged), at most 256 KiB; the key is the original key, redacted the same way. "
            "Nothing is lost: processing continues behind it and an operator re-drives it. "
            "One partition. " + DEAD_LETTER_POLICY
        ),
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        "bindings": {
            "kafka": {
                "partitions": 1,
                "topicConfiguration": {"cleanup.policy": ["delete"]},
            }
        },
    }


DEAD_LETTER_MESSAGE: dict[str, Any] = {
    "name": "dead_letter",
    "title": "DeadLetter",
    "contentType": "application/octet-stream",
    "headers": DEAD_LETTER_HEADERS,
    "payload": {
        "type": "string",
        "format": "binary",
        "maxLength": 262144,
        "description": "The original message bytes, card numbers redacted, at most 256 KiB.",
    },
    "bindings": {"kafka": {"key": {"type": "string", "description": "the original key, redacted"}}},
}


def asyncapi(service: str) -> dict[str, Any]:
    roles = SERVICE_CHANNELS[service]
    topics = {t.name: t for role in roles.values() for t in role}
    models = [m for t in topics.values() for m in message_types(t)]
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    channels = {name.replace(".", "_"): _channel(t) for name, t in sorted(topics.items())}
    operations: dict[str, Any] = {}
    for t in roles["receives"]:
        ref = t.dead_letter.replace(".", "_")
        channels[ref] = _dead_letter_channel(t, service)
        operations[f"send_{ref}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{ref}"},
            "messages": [{"$ref": f"#/channels/{ref}/messages/DeadLetter"}],
        }
    for role, action in (("receives", "receive"), ("sends", "send")):
        for t in roles[role]:
            ref = t.name.replace(".", "_")
            operations[f"{action}_{ref}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{ref}"},
                "messages": [{"$ref": f"#/channels/{ref}/messages/{m.__name__}"} for m in message_types(t)],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": service,
            "version": VERSION,
            "description": (
                f"Kafka channels of {service}. Every message is a versioned envelope keyed by "
                f"account id; messages that can never be processed go to '<topic>.dlq'. "
                f"{DEAD_LETTER_POLICY} " + AT_LEAST_ONCE + " " + CROSS_MESSAGE_RULES
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                m.__name__: {
                    "name": _type_name(m),
                    "title": m.__name__,
                    "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
                    "bindings": {"kafka": {"key": {"type": "string", "description": "account id"}}},
                }
                for m in models
            }
            | {"DeadLetter": DEAD_LETTER_MESSAGE},
            "schemas": defs.get("$defs", {}),
        },
    }


def webhook_openapi() -> dict[str, Any]:
    """payment-intake's HTTP contract: the provider's webhook endpoint."""
    _, defs = models_json_schema(
        [(m, "validation") for m in (ProviderWebhook, StripeEvent, WebhookAccepted, WebhookRefused)],
        ref_template="#/components/schemas/{model}",
    )

    def refused(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookRefused"}}},
        }

    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "payment-intake",
            "version": VERSION,
            "description": (
                "The webhook endpoint a payment provider calls. Standard Webhooks "
                "(https://www.standardwebhooks.com): the body is signed with the shared secret "
                "(PAYMENTS_WEBHOOK_SECRET; several, space-separated, during a rotation). An accepted "
                "webhook becomes one provider.callback_received on payments.callbacks, event_id "
                "derived from webhook-id; a repeated webhook-id has no second effect. The sandbox "
                "provider (contracts/openapi/sandbox-provider.json) sends exactly these."
            ),
        },
        "paths": {
            "/callbacks/provider": {
                "post": {
                    "operationId": "provider_callback",
                    "summary": "Receive a signed provider webhook",
                    "parameters": [
                        {**header, "name": "webhook-id", "description": "Unique per message; the dedupe key"},
                        {
                            **header,
                            "name": "webhook-timestamp",
                            "description": "Integer seconds since the epoch; refused beyond 5 minutes off",
                        },
                        {
                            **header,
                            "name": "webhook-signature",
                            "description": "v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ProviderWebhook"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "accepted, duplicate or ignored",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/WebhookAccepted"}
                                }
                            },
                        },
                        "400": refused("bad_timestamp (missing, not an integer, outside 5 minutes) or "
                                       "invalid_body (validly signed, but not a JSON object of this "
                                       "contract: not UTF-8 JSON, truncated, nested too deep, empty, null, "
                                       "an array, a number, no type); nothing stored"),
                        "401": refused("bad_signature: no secret verifies the raw body (checked before "
                                       "the body is parsed); nothing stored"),
                        "408": refused("request_timeout: the body did not arrive within "
                                       "PAYMENT_INTAKE_CALLBACK_BODY_TIMEOUT_S (10 s)"),
                        "409": refused("account_mismatch: the payment belongs to another account than "
                                       "data.account_id; nothing published"),
                        "413": refused("payload_too_large: over PAYMENT_INTAKE_CALLBACK_MAX_BYTES "
                                       "(64 KiB), refused before it is read"),
                        "422": refused("card_number_in_input: a callback never carries a card number"),
                        "503": refused("unavailable: the database is down; the provider retries"),
                    },
                }
            },
            "/callbacks/stripe": {
                "post": {
                    "operationId": "stripe_callback",
                    "summary": "Receive a Stripe event (every Stripe merchant's endpoint; docs/providers.md)",
                    "parameters": [
                        {
                            **header,
                            "name": "Stripe-Signature",
                            "description": "t=<seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'> with the "
                            "endpoint's signing secret (two live while rolling); refused beyond 5 minutes"
                            " off",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/StripeEvent"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "accepted, duplicate (this event id was accepted before) or "
                            "ignored (a type or an object not ours)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/WebhookAccepted"}
                                }
                            },
                        },
                        "400": refused("bad_timestamp (no t=, or outside 5 minutes) or invalid_body "
                                       "(signed, but not a Stripe event); nothing stored"),
                        "401": refused("bad_signature: no Stripe merchant's secret verifies it; "
                                       "nothing stored"),
                        "408": refused("request_timeout: the body did not arrive in time"),
                        "409": refused("account_mismatch: the account is not of the merchant whose secret "
                                       "signed it (or not from its connected account); nothing published"),
                        "413": refused("payload_too_large: over PAYMENT_INTAKE_CALLBACK_MAX_BYTES"),
                        "422": refused("card_number_in_input: a callback never carries a card number"),
                        "503": refused("unavailable: the database is down; Stripe retries"),
                    },
                }
            },
        },
        "components": {"schemas": defs.get("$defs", {})},
    }


def generated_files() -> dict[str, str]:
    files = json_schemas()
    files["openapi/payment-intake.json"] = json.dumps(webhook_openapi(), indent=2, sort_keys=True) + "\n"
    for service in SERVICE_CHANNELS:
        files[f"asyncapi/{service}.yaml"] = yaml.safe_dump(asyncapi(service), sort_keys=True, width=100)
    return files


def drift(root: Path, files: dict[str, str]) -> list[str]:
    problems = []
    for rel, text in files.items():
        path = root / rel
        current = path.read_text() if path.exists() else ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), lineterm="", n=1)
            problems.append(f"{rel} is stale:\n" + "\n".join(list(diff)[:20]))
    known = set(files)
    for generated_dir in ("schemas", "asyncapi"):
        for path in (root / generated_dir).rglob("*"):
            rel = str(path.relative_to(root))
            if path.is_file() and rel not in known:
                problems.append(f"{rel} is no longer generated; delete it")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("contracts"))
    parser.add_argument("--check", action="store_true", help="fail if committed files are stale")
    args = parser.parse_args()
    files = generated_files()
    if args.check:
        problems = drift(args.out, files)
        if problems:
            print("\n\n".join(problems), file=sys.stderr)
            print("\nRun `make contracts` and commit the result.", file=sys.stderr)
            raise SystemExit(1)
        print(f"contracts up to date ({len(files)} files)")
        return
    for rel, text in files.items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files)} files under {args.out}/")
