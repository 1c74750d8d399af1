"""The committed contracts as an integrating team reads them: JSON Schemas per message
type, AsyncAPI documents and OpenAPI documents under contracts/, nothing imported from
our code. Validation uses the jsonschema library (Draft 2020-12, formats checked) for
messages and schemathesis for HTTP answers."""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import schemathesis
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
INTEGRATION_DOC = ROOT / "docs" / "integration.md"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


@cache
def message_schemas() -> dict[str, dict[str, Any]]:
    """Every message type's JSON Schema, by type (the file name)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((CONTRACTS / "schemas").rglob("*.json"))}


@cache
def topic_of_type() -> dict[str, str]:
    return {p.stem: p.parent.name for p in (CONTRACTS / "schemas").rglob("*.json")}


@cache
def _validator(message_type: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(message_schemas()[message_type], format_checker=FORMATS)


def message_problems(value: bytes) -> list[str]:
    """Why a message read from a topic does not match the contract (empty: it does)."""
    try:
        message = json.loads(value)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in message_schemas():
        return [f"no schema for type {kind!r}"]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(kind).iter_errors(message)
    ]


def doc_blocks() -> list[tuple[str, str]]:
    """Every fenced code block of docs/integration.md: (info string, text)."""
    blocks, info, lines = [], None, []
    for line in INTEGRATION_DOC.read_text().splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip(), []
            else:
                blocks.append((info, "\n".join(lines)))
                info = None
        elif info is not None:
            lines.append(line)
    return blocks


def doc_messages() -> dict[str, dict[str, Any]]:
    """The first message of each type the integration guide shows."""
    found: dict[str, dict[str, Any]] = {}
    for info, text in doc_blocks():
        if info == "json message":
            message = json.loads(text)
            found.setdefault(message["type"], message)
    return found


def build(message_type: str, *, from_doc: bool = False, **payload: Any) -> dict[str, Any]:
    """A message made from its schema's example (or the integration guide's): fresh ids and
    time, payload fields replaced; it must validate against the schema before it is sent."""
    source = doc_messages()[message_type] if from_doc else message_schemas()[message_type]["examples"][0]
    example = copy.deepcopy(source)
    event_id = str(uuid.uuid4())
    example.update(
        event_id=event_id,
        correlation_id=event_id,
        occurred_at=datetime.datetime.now(datetime.UTC).isoformat(),
    )
    account = payload.pop("account_id", None)
    if account is not None:
        example["account_id"] = account
    example["payload"].update(payload)
    problems = [e.message for e in _validator(message_type).iter_errors(example)]
    assert not problems, f"{message_type} built by the test fails its schema: {problems}"
    return example


@cache
def asyncapi(service: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONTRACTS / "asyncapi" / f"{service}.yaml").read_text())
    return loaded


def dead_letter_problems(service: str, headers: dict[str, str]) -> list[str]:
    schema = asyncapi(service)["components"]["messages"]["DeadLetter"]["headers"]
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    return [e.message for e in validator.iter_errors(headers)]


@cache
def openapi(name: str) -> Any:
    return schemathesis.openapi.from_dict(json.loads((CONTRACTS / "openapi" / f"{name}.json").read_text()))


def checked(name: str, path: str, method: str, response: httpx.Response) -> httpx.Response:
    """`response` must be a documented status of the operation and match its schema."""
    operation = openapi(name)[path][method.upper()]
    documented = set(operation.definition.raw["responses"])
    assert str(response.status_code) in documented, (
        f"{method} {path} answered {response.status_code}, not among {sorted(documented)}: {response.text}"
    )
    response.read()
    operation.validate_response(response)
    return response
