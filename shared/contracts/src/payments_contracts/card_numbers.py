"""Detect and redact anything that looks like a payment card number (PAN).

Card numbers must never reach our logs, tables or topics: the card form is the
provider's. A PAN here is 13 to 19 digits that pass the Luhn check, written plainly or
grouped by any common separators (spaces, dashes, dots; one or several, mixed), alone
or inside other text. Within a longer run of digit groups ("ref 12 4111 1111 1111
1111") every stretch of whole groups is considered, so a number cannot hide behind a
prefix; a single run of more than 19 digits is not a card number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_SEPARATORS = "\\s.\\-\u2010\u2011\u2012\u2013\u2014\u2212"  # whitespace, dot, dashes
_RUN = re.compile(rf"(?<!\d)\d+(?:[{_SEPARATORS}]{{1,4}}\d+)*")
_GROUP = re.compile(r"\d+")
# Possessive: giving back non-digits never lets the next \d match, so no backtracking.
_ENOUGH_DIGITS = re.compile(r"(?:\D*+\d){13}")
_UUID_LENGTH = 36
# About 1 in 400 random UUIDs holds 13+ digits across its dashes that pass Luhn
# ("034-1766-4131-9635"); a UUID is an identifier (every envelope carries three), and
# nobody writes a card number in its 8-4-4-4-12 hex shape.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Likewise a hex identifier (a UUID without dashes, a digest, a webhook id): 16+ hex
# characters with a letter among them, standing alone. 32 random hex characters hold a
# Luhn-valid run of 13+ digits about once in 250; refusing such a webhook would refuse
# it on every retry.
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{16,}(?![0-9A-Za-z])")
REDACTED = "[redacted card number]"
MIN_DIGITS, MAX_DIGITS = 13, 19
_CONTAINERS = (dict, list, tuple)  # a tuple of types: isinstance on a union is slower


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


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each card number, left to right, never overlapping."""
    # Most text has fewer than 13 digits or is one UUID: answered without the full scan.
    if (
        len(text) < MIN_DIGITS
        or (len(text) == _UUID_LENGTH and _UUID.fullmatch(text))
        or _ENOUGH_DIGITS.match(text) is None
    ):
        return
    uuids = [m.span() for m in _UUID.finditer(text)] if "-" in text else []
    uuids += [m.span() for m in _HEX_ID.finditer(text) if not m.group().isdigit()]
    for run in _RUN.finditer(text):
        groups = [
            (m.start() + run.start(), m.end() + run.start(), m.group()) for m in _GROUP.finditer(run.group())
        ]
        if sum(len(g) for *_, g in groups) < MIN_DIGITS:
            continue
        first = 0
        while first < len(groups):
            found = _longest_card_from(groups, first)
            if found is None:
                first += 1
                continue
            last = found
            start, end = groups[first][0], groups[last][1]
            if not any(u_start <= start and end <= u_end for u_start, u_end in uuids):
                yield start, end
            first = last + 1


def _longest_card_from(groups: list[tuple[int, int, str]], first: int) -> int | None:
    digits, best = "", None
    for last in range(first, len(groups)):
        digits += groups[last][2]
        if len(digits) > MAX_DIGITS:
            break
        if len(digits) >= MIN_DIGITS and passes_luhn(digits):
            best = last
    return best


def contains_card_number(text: str) -> bool:
    if len(text) < MIN_DIGITS:  # most fields: answered without starting the scan
        return False
    return next(_spans(text), None) is not None


def redact_card_numbers(text: str) -> str:
    for start, end in reversed(list(_spans(text))):
        text = text[:start] + REDACTED + text[end:]
    return text


def card_number_fields(value: Any, path: str = "") -> list[str]:
    """Where (field paths, never values) something that looks like a card number sits,
    in any string of a JSON-like document (its keys are our contracts' field names)."""
    texts: list[str] = []
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, dict | list | tuple):
        _collect(value, texts)
    if not any(contains_card_number(text) for text in texts):
        return []  # the usual case, without building a path for every field
    return [where for where, text in _strings(value, path) if contains_card_number(text)]


def _collect(value: Any, texts: list[str]) -> None:
    # dict/list, not the Mapping ABC: this runs for every document and isinstance on an
    # ABC costs several times more.
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if type(item) is str:
            if len(item) >= MIN_DIGITS:  # shorter text cannot hold a card number
                texts.append(item)
        elif isinstance(item, _CONTAINERS):
            _collect(item, texts)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def redact_document(value: Any) -> Any:
    """A JSON-like document with every card number in every string (and key) redacted."""
    if isinstance(value, str):
        return redact_card_numbers(value)
    if isinstance(value, dict):
        return {redact_card_numbers(str(k)): redact_document(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_document(item) for item in value]
    return value
