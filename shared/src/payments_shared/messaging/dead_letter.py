"""Dead letters: a message that can never be processed, with why and where it came from.

Headers carry the error, the source topic/partition/offset and the service name. The
body is the original bytes with anything that looks like a card number redacted, so
a portal that wrongly sent a card number never gets it stored in our dead letters.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from payments_shared.domain.card_numbers import contains_card_number, redact_card_numbers

from .outbox import OutgoingMessage

_MAX_ERROR_CHARS = 2000


def dead_letter(record: ConsumerRecord[bytes, bytes], *, service: str, error: str) -> OutgoingMessage:
    raw = record.value or b""
    body = redact_card_numbers(raw.decode("utf-8", errors="replace")).encode()
    key = record.key
    text_key = (key or b"").decode("utf-8", errors="replace")
    if contains_card_number(text_key):  # the account id: a card number could be typed there too
        key = redact_card_numbers(text_key).encode()
    return OutgoingMessage(
        topic=f"{record.topic}.dlq",
        key=key,
        value=body,
        headers={
            "dlq.error": redact_card_numbers(error)[:_MAX_ERROR_CHARS],
            "dlq.source.topic": record.topic,
            "dlq.source.partition": str(record.partition),
            "dlq.source.offset": str(record.offset),
            "dlq.service": service,
        },
    )
