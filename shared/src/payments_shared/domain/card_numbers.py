"""Detect and redact anything that looks like a payment card number (PAN).

Card numbers must never reach our logs, tables or topics: the card form is the
provider's. A PAN here is 13 to 19 digits, optionally grouped by single spaces or
dashes, that pass the Luhn check.
"""

from __future__ import annotations

import re

_CANDIDATE = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
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


def contains_card_number(text: str) -> bool:
    return any(_is_card_number(m.group()) for m in _CANDIDATE.finditer(text))


def redact_card_numbers(text: str) -> str:
    return _CANDIDATE.sub(lambda m: REDACTED if _is_card_number(m.group()) else m.group(), text)
