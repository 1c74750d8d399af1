"""Detect and redact anything that looks like a payment card number (PAN).

Card numbers must never reach our logs, tables or topics: the card form is the
provider's. A PAN here is 13 to 19 digits, optionally grouped by single spaces or
dashes, that pass the Luhn check.
"""

from __future__ import annotations

import re

_CANDIDATE = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
# About 1 in 400 random UUIDs holds 13+ digits across its dashes that pass Luhn
# ("034-1766-4131-9635"); a UUID is an identifier (every envelope carries three), and
# nobody writes a card number in its 8-4-4-4-12 hex shape.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REDACTED = "[redacted card number]"


def passes_luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card_number(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and passes_luhn(digits)


def _card_numbers(text: str) -> list[re.Match[str]]:
    uuids = [m.span() for m in _UUID.finditer(text)] if "-" in text else []
    return [
        m
        for m in _CANDIDATE.finditer(text)
        if _is_card_number(m.group())
        and not any(start <= m.start() and m.end() <= end for start, end in uuids)
    ]


def contains_card_number(text: str) -> bool:
    return bool(_card_numbers(text))


def redact_card_numbers(text: str) -> str:
    for m in reversed(_card_numbers(text)):
        text = text[: m.start()] + REDACTED + text[m.end() :]
    return text
