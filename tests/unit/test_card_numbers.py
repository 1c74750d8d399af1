import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments_contracts.card_numbers import (
    REDACTED,
    card_number_fields,
    contains_card_number,
    passes_luhn,
    redact_card_numbers,
)

VISA_TEST = "4111111111111111"
AMEX_TEST = "378282246310005"


@pytest.mark.parametrize(
    "text",
    [
        VISA_TEST,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111.1111.1111.1111",
        "4111  1111  1111  1111",
        "4111 - 1111 . 1111\t1111",
        "4111\u00a01111\u20131111 1111",  # no-break space, en dash
        f"card: {AMEX_TEST} thanks",
        "PO-4111.1111.1111.1111/A",
        "6011000990139424",
        "ref 12 4111 1111 1111 1111",  # behind a prefix group
    ],
)
def test_card_numbers_are_found_with_any_separators(text: str) -> None:
    assert contains_card_number(text)
    assert not contains_card_number(redact_card_numbers(text))
    assert REDACTED in redact_card_numbers(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "123456789012",  # 12 digits
        "41111111111111111111",  # 20 digits in one run: not a card number
        "+1 555 0100",
        "Suite 400, 12345",
        "2025-01-31",
        "4111 1111 1111 111",  # 15 digits, fails Luhn
    ],
)
def test_other_numbers_are_not_card_numbers(text: str) -> None:
    assert not contains_card_number(text)


def test_redaction_removes_every_card_number_and_keeps_the_rest() -> None:
    text = f"name {VISA_TEST} and {AMEX_TEST} end 12345"
    redacted = redact_card_numbers(text)
    assert VISA_TEST not in redacted and AMEX_TEST not in redacted
    assert redacted == f"name {REDACTED} and {REDACTED} end 12345"


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if passes_luhn(body + check):
            return body + check
    raise AssertionError("unreachable")


SEPARATOR_RUNS = st.text(alphabet=" .-\t\u00a0\u2013", min_size=0, max_size=3)
FILLER = st.text(alphabet=st.characters(blacklist_categories=["Nd", "Cs"]), max_size=12)


@st.composite
def written_card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, how someone wrote them): groups of 1-6 digits, any separators between."""
    number = _luhn_complete(draw(st.text(alphabet="0123456789", min_size=12, max_size=18)))
    written, i = "", 0
    while i < len(number):
        size = draw(st.integers(1, 6))
        written += number[i : i + size]
        i += size
        if i < len(number):
            written += draw(SEPARATOR_RUNS)
    return number, written


@given(written_card_numbers(), FILLER, FILLER)
def test_any_luhn_valid_13_to_19_digits_with_any_separators_is_found_and_redacted(
    card: tuple[str, str], before: str, after: str
) -> None:
    number, written = card
    text = f"{before} {written} {after}"
    assert contains_card_number(text)
    redacted = redact_card_numbers(text)
    assert REDACTED in redacted
    assert number not in "".join(c for c in redacted if c.isdigit())


@given(st.text(alphabet="0123456789 .-", max_size=40))
def test_redacted_text_never_holds_a_card_number(text: str) -> None:
    assert not contains_card_number(redact_card_numbers(text))


def test_fields_are_named_by_path_never_by_value() -> None:
    document = {
        "account_id": "A1",
        "payload": {"po_number": "PO 4111.1111.1111.1111", "lines": [{"note": "ok"}, {"note": AMEX_TEST}]},
    }
    assert card_number_fields(document) == ["payload.po_number", "payload.lines[1].note"]


def test_a_uuid_is_an_identifier_even_when_its_digits_pass_luhn() -> None:
    event_id = "b739a034-1766-4131-9635-b159bbc440bc"  # "034-1766-4131-9635" passes Luhn
    assert not contains_card_number(f"event {event_id}")
    assert redact_card_numbers(f"event {event_id}") == f"event {event_id}"
    assert contains_card_number(f"event {event_id} card 4111 1111 1111 1111")


def test_a_hex_identifier_is_an_identifier_even_when_its_digits_pass_luhn() -> None:
    webhook_id = "msg_valid_4111111111111111ab00c0ffee"  # 16 digits that pass Luhn, inside hex
    assert not contains_card_number(webhook_id)
    assert not contains_card_number("digest 3a4111111111111111")
    assert contains_card_number("msg 4111111111111111 ab")  # standing alone, it is a card number


def test_the_quick_answers_keep_the_edges() -> None:
    # 13 characters: the shortest text that can be a card number, alone or in a document.
    assert contains_card_number("4222222222222")
    assert not contains_card_number("422222222222")
    assert card_number_fields({"a": "B-12", "b": {"c": ["4222222222222", "x"]}}) == ["b.c[0]"]
    # 36 characters that are not a UUID are scanned like any other text.
    text = "card 4111 1111 1111 1111 on file ok."
    assert len(text) == 36 and contains_card_number(text)
    assert not contains_card_number("d70ccf56-bc9d-43d6-90c5-bfe2213388b8")
    # Digits spread among other characters still count towards the 13.
    assert contains_card_number("4-1-1-1 1-1-1-1 1-1-1-1 1-1-1-1")
