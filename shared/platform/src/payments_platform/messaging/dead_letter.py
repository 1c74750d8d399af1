"""Dead letters: a message that can never be processed, with why and where it came from.

Headers carry the error, the source topic/partition/offset and the service name. The
body is the original bytes with anything that looks like a card number redacted, so
a portal that wrongly sent a card number never gets it stored in our dead letters.

A dead letter is bounded: bytes that are not UTF-8 pass through unchanged (decoding
them with replacement characters would triple their size), and a body larger than
`MAX_BODY_BYTES` keeps its head, with its full size and digest in the headers. The
broker's message limit is 1 MiB; a dead letter that could exceed it would block the
outbox it is published from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from payments_contracts.card_numbers import redact_card_numbers

from .outbox import OutgoingMessage

MAX_BODY_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Position:
    """Where a consumed message was read from."""

    topic: str
    partition: int
    offset: int


def _redacted(raw: bytes) -> bytes:
    # surrogateescape maps each byte that is not UTF-8 to one code point and back.
    return redact_card_numbers(raw.decode("utf-8", errors="surrogateescape")).encode(
        "utf-8", errors="surrogateescape"
    )


def dead_letter(
    source: Position,
    key: bytes | None,
    value: bytes | None,
    *,
    service: str,
    error: str,
    reason: str | None = None,
) -> OutgoingMessage:
    body = _redacted(value or b"")
    headers = {
        "dlq.error": redact_card_numbers(error)[:_MAX_ERROR_CHARS],
        "dlq.source.topic": source.topic,
        "dlq.source.partition": str(source.partition),
        "dlq.source.offset": str(source.offset),
        "dlq.service": service,
        "dlq.body.bytes": str(len(body)),
    }
    if reason is not None:
        headers["dlq.reason"] = reason
    if len(body) > MAX_BODY_BYTES:
        headers["dlq.body.sha256"] = hashlib.sha256(body).hexdigest()
        headers["dlq.body.truncated"] = "true"
        body = body[:MAX_BODY_BYTES]
    return OutgoingMessage(
        topic=f"{source.topic}.dlq",
        key=_redacted(key)[:MAX_KEY_BYTES] if key is not None else None,
        value=body,
        headers=headers,
    )


def described(letter: OutgoingMessage) -> tuple[Position, dict[str, object]] | None:
    """Where a dead letter came from, and what a log line says about it: its position,
    why and who set it aside (the error as its header has it, card numbers masked),
    never its body. None for a message that is no dead letter."""
    headers = letter.headers
    topic = headers.get("dlq.source.topic")
    if topic is None:
        return None
    source = Position(topic, int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
    return source, {
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "dead_letter_topic": letter.topic,
        "service": headers["dlq.service"],
        "reason": headers.get("dlq.reason"),
        "error": headers["dlq.error"],
    }
