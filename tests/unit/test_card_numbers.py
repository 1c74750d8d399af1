import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments_shared.domain.card_numbers import (
    REDACTED,
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
        f"card: {AMEX_TEST} thanks",
        "6011000990139424",
    ],
)
def test_card_numbers_are_found_with_or_without_separators(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "123456789012",  # 12 digits
        "41111111111111111111",  # 20 digits: not a card number
        "+1 555 0100",
        "Suite 400, 12345",
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


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.sampled_from(["", " ", "-"]))
def test_any_luhn_valid_13_to_19_digit_number_is_redacted(body: str, sep: str) -> None:
    number = _luhn_complete(body)
    grouped = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    assert contains_card_number(f"x {grouped} y")
    assert number not in redact_card_numbers(f"x {grouped} y").replace(sep, "")


def test_a_uuid_is_an_identifier_even_when_its_digits_pass_luhn() -> None:
    event_id = "b739a034-1766-4131-9635-b159bbc440bc"  # "034-1766-4131-9635" passes Luhn
    assert not contains_card_number(f"event {event_id}")
    assert redact_card_numbers(f"event {event_id}") == f"event {event_id}"
    assert contains_card_number(f"event {event_id} card 4111 1111 1111 1111")
