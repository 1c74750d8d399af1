"""Generate the committed JSON Schemas (one per message) and AsyncAPI documents (one per
service) from the pydantic contracts. `--check` fails when the committed files drift."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from payments_shared.topics import DEAD_LETTER_POLICY, SERVICE_CHANNELS, TOPICS, Topic

VERSION = "1.0.0"

AT_LEAST_ONCE = (
    "Delivery is at least once: a message can appear more than once with the same event_id "
    "(an outbox relay that stopped after the broker acknowledged a batch, before deleting its "
    "rows, or an upstream producer's retry), possibly after later messages of its key. A "
    "repeat is byte-for-byte the same message. Every consumer must dedupe by event_id; a new "
    "event_id is a new fact, never a repeat."
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


def asyncapi(service: str) -> dict[str, Any]:
    roles = SERVICE_CHANNELS[service]
    topics = {t.name: t for role in roles.values() for t in role}
    models = [m for t in topics.values() for m in message_types(t)]
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    channels = {name.replace(".", "_"): _channel(t) for name, t in sorted(topics.items())}
    operations: dict[str, Any] = {}
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
                f"{DEAD_LETTER_POLICY} " + AT_LEAST_ONCE
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
            },
            "schemas": defs.get("$defs", {}),
        },
    }


def generated_files() -> dict[str, str]:
    files = json_schemas()
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
