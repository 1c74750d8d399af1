"""The fast decoders agree with the published contracts.

For every committed JSON Schema (contracts/schemas/, generated from the pydantic models)
of a topic with a fast decoder: messages generated from the schema, and the same messages
mutated (a field dropped, an unknown one added, a value of another JSON type, whitespace
around a text, a number where text goes...), are accepted or refused alike by the fast
decoder and by pydantic's, and an accepted one decodes to equal values.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from payments_contracts.invoices import InvoiceRegistered, InvoiceRegisteredPayload
from payments_contracts.money import Money
from payments_contracts.topics import TOPICS, Topic
from payments_platform.messaging.fast_decoding import Unsupported, encode, fast_decoder, tag_of

ROOT = Path(__file__).resolve().parents[2]
FAST = [t for t in TOPICS if t.name != "erp.invoices"]
SCHEMAS = [
    (topic, path)
    for topic in FAST
    for path in sorted((ROOT / "contracts" / "schemas" / topic.name).glob("*.json"))
]
FORMATS = {
    "uuid": st.uuids().map(str),
    "date": st.dates().map(str),
    "date-time": st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])).map(
        lambda t: t.isoformat()
    ),
}
CURRENCIES = st.sampled_from(["USD", "JPY", "KWD", "EUR", "XXX", "usd"])


def plain(value: Any) -> Any:
    """A decoded message as plain values, whichever decoder made it (the discriminator
    included: a Struct carries it as its tag)."""
    if isinstance(value, BaseModel):
        return {k: plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, msgspec.Struct):
        out = {f: plain(getattr(value, f)) for f in value.__struct_fields__}
        config = value.__struct_config__
        if config.tag_field is not None:
            out[config.tag_field] = tag_of(value)
        return out
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "accepted", plain(decode(data))
    except (ValidationError, msgspec.MsgspecError) as exc:
        return "refused", type(exc).__name__


def agree(topic: Topic, message: Any) -> None:
    data = json.dumps(message).encode()
    fast = outcome(fast_decoder(topic), data)
    reference = outcome(topic.decoder.validate_json, data)
    made_up = [f for f in ("event_id", "occurred_at") if isinstance(message, dict) and f not in message]
    assert without(fast, made_up) == without(reference, made_up), data
    if fast[0] == "accepted":
        again = outcome(fast_decoder(topic), encode(fast_decoder(topic)(data)).encode())
        assert without(again, made_up) == without(reference, made_up), "encoded back, it decodes the same"


def without(result: tuple[str, Any], made_up: list[str]) -> tuple[str, Any]:
    """Each decoder fills a missing event_id or occurred_at in anew: not compared."""
    verdict, value = result
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in made_up}
    return verdict, value


def from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Messages valid under one of our generated schemas (the subset of JSON Schema that
    pydantic writes for them: objects, $ref, anyOf/oneOf, const, enum, texts with lengths,
    patterns and formats, integers, arrays, booleans, null). hypothesis-jsonschema would
    do this, but does not run on the hypothesis this project uses."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return st.one_of([from_schema(s, defs) for s in schema[union]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {
            name: from_schema(sub, defs) if name in required else st.none() | from_schema(sub, defs)
            for name, sub in properties.items()
        }
        return st.fixed_dictionaries(fields).map(
            lambda d: {k: v for k, v in d.items() if k in required or v is not None}
        )
    if kind == "array":
        return st.lists(from_schema(schema["items"], defs), min_size=schema.get("minItems", 0), max_size=3)
    if kind == "string":
        if "format" in schema:
            return FORMATS[schema["format"]]
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 12), 12))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=2**63 - 1)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"a schema keyword this generator does not know: {schema}")


def with_currencies(draw: st.DrawFn, value: Any) -> Any:
    """Mostly known currencies: a schema says only `string`, and a message with an unknown
    one is refused before anything else is compared."""
    if isinstance(value, dict):
        out = {k: with_currencies(draw, v) for k, v in value.items()}
        if set(out) == {"amount_minor", "currency"}:
            out["currency"] = draw(CURRENCIES)
        return out
    if isinstance(value, list):
        return [with_currencies(draw, v) for v in value]
    return value


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", " ", "x", " INV-1 ", "12", "1.5", "true", "2026-01-01", "2026-01-01T00:00:00"])
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


def paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here] if here else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*here, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, message: Any) -> Any:
    """One change that may break the message: drop, add, replace or pad a value."""
    message = json.loads(json.dumps(message))
    path = draw(st.sampled_from(paths(message)))
    parent = message
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    how = draw(st.sampled_from(["drop", "add", "replace", "pad", "number_as_text", "time_as_number"]))
    if how == "drop" and isinstance(parent, dict):
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=6))] = draw(JSON_VALUES)
    elif how == "pad" and isinstance(parent[last], str):
        parent[last] = draw(st.sampled_from([" ", "\t", "\u00a0"])) + parent[last]
    elif how == "number_as_text" and isinstance(parent[last], int) and not isinstance(parent[last], bool):
        parent[last] = str(parent[last])
    elif how == "time_as_number" and isinstance(parent[last], str) and parent[last][:2] in ("19", "20"):
        parent[last] = draw(st.integers(0, 2**33))
    else:
        parent[last] = draw(JSON_VALUES)
    return message


@pytest.mark.parametrize(("topic", "path"), SCHEMAS, ids=[f"{t.name}/{p.stem}" for t, p in SCHEMAS])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_committed_schema_and_its_fast_decoder_agree(topic: Topic, path: Path, data: st.DataObject) -> None:
    schema = json.loads(path.read_text())
    valid = data.draw(from_schema(schema).map(lambda m: with_currencies(data.draw, m)))
    agree(topic, valid)
    agree(topic, data.draw(mutated(valid)))


def test_the_examples_in_the_schemas_decode_fast_to_what_pydantic_decodes() -> None:
    for topic, path in SCHEMAS:
        for example in json.loads(path.read_text()).get("examples", []):
            data = json.dumps(example).encode()
            assert plain(fast_decoder(topic)(data)) == plain(topic.decoder.validate_json(data)), path


def registered() -> dict[str, Any]:
    return json.loads(
        InvoiceRegistered.originating(
            producer="test",
            account_id="C-1",
            payload=InvoiceRegisteredPayload(
                invoice_number="INV-1",
                erp_version=1,
                provider_invoice_id="p-1",
                amount=Money(amount_minor=125_000, currency="USD"),
            ),
        ).model_dump_json()
    )


def test_what_only_pydantic_accepts_is_decoded_by_it_and_kept_as_a_struct() -> None:
    topic = next(t for t in FAST if t.name == "invoices")
    example = registered()
    example["payload"]["amount"]["amount_minor"] = "1250"  # lax: text for an integer
    example["account_id"] = f"  {example['account_id']} "  # stripped by pydantic
    decoded = fast_decoder(topic)(json.dumps(example).encode())
    assert isinstance(decoded, msgspec.Struct)
    assert decoded.payload.amount.amount_minor == 1250
    assert decoded.account_id == example["account_id"].strip()


def test_a_topic_whose_models_the_fast_decoder_cannot_mirror_is_refused_when_built() -> None:
    erp = next(t for t in TOPICS if t.name == "erp.invoices")
    with pytest.raises(Unsupported):
        fast_decoder(erp)
