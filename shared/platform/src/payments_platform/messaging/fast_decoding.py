"""Decoders for the hot path: msgspec Structs built from the published pydantic models.

The pydantic models (`payments_contracts`) stay the one source of the contracts: the JSON
Schemas are generated from them, and so are these Structs, field by field, at import.
msgspec decodes a known shape straight from bytes into Structs (attribute access like the
models', so a handler reads either); pydantic's `validate_json` of an envelope was 22% of
the projector's CPU (bench/results/2026-12-02T0059Z-profile.md).

What msgspec would judge differently falls back to pydantic, so the accepted messages and
the dead-letter errors are pydantic's:

- msgspec is strict: a value pydantic's lax mode coerces (`"12"` for an int, a Unix time
  for a datetime) fails here and is decoded by pydantic, then converted;
- a constrained text pydantic strips (`strip_whitespace`) must have no whitespace at either
  end here, so one that has goes to pydantic too;
- anything msgspec cannot express (a validator function) is refused when the Structs are
  built, never ignored.

`tests/unit/test_fast_decoding.py` checks, for every committed schema, that the two
decoders accept and refuse the same messages (generated from the schema, and mutated)
and decode to equal values.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal

import annotated_types
import msgspec
from pydantic import AwareDatetime, BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic.functional_validators import AfterValidator
from pydantic_core import PydanticUndefined

from payments_contracts.money import CURRENCY_EXPONENTS, _known_currency
from payments_contracts.topics import Topic

__all__ = ["Unsupported", "fast_decoder", "struct_of", "tag_of"]

# No whitespace at either end: what pydantic's strip_whitespace would change is left to it.
# Whitespace as pydantic-core strips it (Rust's `trim`: Unicode White_Space), not Python's
# `\s`, which also takes the separators \x1c-\x1f.
_WHITESPACE = "[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# \Z: `$` passes a final newline. `(?s).` rather than `[\s\S]`: re skips to the end in one
# step instead of testing each character against a class (140 against 190-310 ns a text).
_UNSTRIPPED = rf"(?s)^(?!{_WHITESPACE}).*(?<!{_WHITESPACE})\Z"
_CURRENCIES = Literal[tuple(sorted(CURRENCY_EXPONENTS))]  # type: ignore[valid-type]


class Unsupported(TypeError):
    """A model uses something the fast decoder cannot mirror exactly."""


def tag_of(struct: Any) -> str:
    """The discriminator value (`type` of an envelope, `kind` of a payment method)."""
    return struct.__struct_config__.tag  # type: ignore[no-any-return]


def _discriminator(info: FieldInfo | None) -> str | None:
    return info.discriminator if info is not None and isinstance(info.discriminator, str) else None


def _constraints(metadata: list[Any]) -> tuple[dict[str, Any], Any, bool]:
    """(msgspec Meta keywords, a replacement type or None, strip) from pydantic metadata."""
    meta: dict[str, Any] = {}
    replaced: Any = None
    strip = False
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            meta["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            meta["max_length"] = item.max_length
        elif isinstance(item, annotated_types.Ge):
            meta["ge"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            meta["gt"] = item.gt
        elif isinstance(item, annotated_types.Le):
            meta["le"] = item.le
        elif isinstance(item, annotated_types.Lt):
            meta["lt"] = item.lt
        elif type(item).__name__ == "StringConstraints":
            for name in ("min_length", "max_length", "pattern"):
                if getattr(item, name) is not None:
                    meta[name] = getattr(item, name)
            strip = bool(item.strip_whitespace)
            if item.to_lower or item.to_upper:
                raise Unsupported(f"string case conversion: {item!r}")
        elif type(item).__name__ == "_PydanticGeneralMetadata":
            pattern = getattr(item, "pattern", None)
            if pattern is not None:
                meta["pattern"] = pattern
            elif vars(item):
                raise Unsupported(f"field metadata {item!r}")
        elif isinstance(item, AfterValidator) and item.func is _known_currency:
            replaced = _CURRENCIES
        elif isinstance(item, FieldInfo):
            m, r, s = _constraints(list(item.metadata))
            meta.update(m)
            replaced = r or replaced
            strip = strip or s
        else:
            raise Unsupported(f"field metadata {item!r}")
    return meta, replaced, strip


def _convert(annotation: Any, metadata: list[Any], discriminator: str | None = None) -> Any:
    """The msgspec type for a pydantic annotation and its field metadata."""
    if typing.get_origin(annotation) is Annotated:
        inner, *extra = typing.get_args(annotation)
        infos = [e for e in extra if isinstance(e, FieldInfo)]
        found = next((d for d in map(_discriminator, infos) if d), None)
        return _convert(inner, [*extra, *metadata], discriminator or found)
    meta, replaced, strip = _constraints([m for m in metadata if not _is_discriminator(m)])
    if replaced is not None:
        annotation = replaced
    origin = typing.get_origin(annotation)
    if annotation is AwareDatetime:
        base: Any = dt.datetime
        meta["tz"] = True
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        base = annotation  # by value, as pydantic does
    elif annotation in (str, int, bool, dt.date, dt.datetime, uuid.UUID) or origin is Literal:
        base = annotation
        if strip:
            if "pattern" in meta:
                raise Unsupported("a stripped text with a pattern")
            meta["pattern"] = _UNSTRIPPED
    elif origin is list:
        (item,) = typing.get_args(annotation)
        base = list[_convert(item, [])]  # type: ignore[misc]
    elif origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        if len(members) > 1:
            if discriminator is None:
                raise Unsupported(f"a union without a discriminator: {annotation!r}")
            converted: Any = typing.Union[tuple(struct_of(m, discriminator) for m in members)]  # noqa: UP007
        else:
            converted = _convert(members[0], [], discriminator)
        base = converted | None if optional else converted
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        base = struct_of(annotation, discriminator)
    else:
        raise Unsupported(f"type {annotation!r}")
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


def _is_discriminator(item: Any) -> bool:
    return isinstance(item, FieldInfo) and _discriminator(item) is not None and not item.metadata


@cache
def struct_of(model: type[BaseModel], tag_field: str | None = None) -> type[msgspec.Struct]:
    """The Struct mirroring `model`; `tag_field` names the discriminator of the union it is
    a member of (its value becomes the Struct's tag, and a class attribute of that name)."""
    fields: list[tuple[str, Any, Any]] = []
    tag: str | None = None
    for name, info in model.model_fields.items():
        if name == tag_field:
            if typing.get_origin(info.annotation) is not Literal:
                raise Unsupported(f"{model.__name__}.{name} is not a literal")
            (tag,) = typing.get_args(info.annotation)
            continue
        kind = _convert(info.annotation, list(info.metadata), _discriminator(info))
        if info.default_factory is not None:
            fields.append((name, kind, msgspec.field(default_factory=info.default_factory)))  # type: ignore[arg-type]
        elif info.default is PydanticUndefined:
            fields.append((name, kind, msgspec.NODEFAULT))
        else:
            fields.append((name, kind, info.default))
    if model.model_config.get("extra") != "forbid":
        raise Unsupported(f"{model.__name__} allows extra fields")
    namespace = {tag_field: tag} if tag_field else {}
    return msgspec.defstruct(
        model.__name__,
        [(n, k) if d is msgspec.NODEFAULT else (n, k, d) for n, k, d in fields],
        namespace=namespace,
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,
        tag_field=tag_field,
        tag=tag,
        module=__name__,
    )


class _NoMessage(msgspec.Struct, tag_field="type", tag="\x00", forbid_unknown_fields=True):
    """Never sent (a tag no message type has)."""


def _members(union: Any) -> list[type[BaseModel]]:
    inner = typing.get_args(union)[0] if typing.get_origin(union) is Annotated else union
    return list(typing.get_args(inner) or (inner,))


def union_decoder(models: list[type[BaseModel]], reference: TypeAdapter[Any]) -> Callable[[bytes], Any]:
    """Decode bytes to the Struct of whichever envelope type they carry; what msgspec
    refuses is decided by `reference` (pydantic), whose ValidationError is raised as is."""
    structs = tuple(struct_of(m, "type") for m in models)
    # A union even of one type: msgspec checks a tag only between members of a union, and
    # pydantic refuses a message without its `type`.
    kind: Any = typing.Union[(*structs, _NoMessage) if len(structs) == 1 else structs]  # noqa: UP007
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)
    decode = decoder.decode
    convert = msgspec.convert

    def fast(data: bytes | str) -> Any:
        try:
            return decode(data)
        except msgspec.MsgspecError:
            model = reference.validate_json(data)  # raises pydantic's ValidationError
            try:
                return convert(model.model_dump(), kind)
            except msgspec.MsgspecError as exc:
                # Accepted by pydantic, yet not representable by the Structs: a mirror
                # gone wrong, refused as pydantic refuses, so the consumer dead-letters it.
                raise _refusal(data, exc) from exc

    return fast


def _refusal(data: bytes | str, exc: Exception) -> Exception:
    from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

    error: InitErrorDetails = {
        "type": PydanticCustomError("out_of_range", "{reason}", {"reason": str(exc)}),
        "loc": ("message",),
        "input": data,
    }
    return ValidationError.from_exception_data("fast decoder", [error])


@cache
def fast_decoder(topic: Topic) -> Callable[[bytes], Any]:
    """The fast decoder of every message type on `topic` (Structs named as the models)."""
    return union_decoder(_members(topic.messages), topic.decoder)


def encode(message: Any) -> str:
    """A decoded message back to JSON text, whichever decoder made it."""
    if isinstance(message, BaseModel):
        return message.model_dump_json()
    return msgspec.json.encode(message).decode()
