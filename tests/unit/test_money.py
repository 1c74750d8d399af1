from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments_contracts.money import (
    CurrencyMismatch,
    Money,
    TooManyDecimals,
    UnknownCurrency,
    currency_exponent,
)


def test_major_units_become_exact_minor_units() -> None:
    assert Money.from_decimal(Decimal("1250.00"), "USD") == Money(amount_minor=125000, currency="USD")
    assert Money.from_decimal(Decimal("1250"), "JPY").amount_minor == 1250
    assert Money.from_decimal(Decimal("1.234"), "KWD").amount_minor == 1234


def test_more_decimals_than_the_currency_allows_is_refused() -> None:
    with pytest.raises(TooManyDecimals, match="more than 2 decimal places"):
        Money.from_decimal(Decimal("10.005"), "USD")
    with pytest.raises(TooManyDecimals):
        Money.from_decimal(Decimal("1.5"), "JPY")


def test_trailing_zeros_beyond_the_exponent_are_not_extra_precision() -> None:
    assert Money.from_decimal(Decimal("10.5000"), "USD").amount_minor == 1050


def test_unknown_currency_is_refused_with_its_code() -> None:
    with pytest.raises(UnknownCurrency, match="'XYZ'"):
        currency_exponent("XYZ")
    with pytest.raises(ValueError, match="unknown currency"):
        Money(amount_minor=1, currency="usd")


def test_amounts_of_different_currencies_never_mix() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(amount_minor=1, currency="USD") + Money(amount_minor=1, currency="EUR")
    with pytest.raises(CurrencyMismatch):
        _ = Money(amount_minor=1, currency="USD") < Money(amount_minor=2, currency="CAD")


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["USD", "JPY", "KWD", "CLF"]))
def test_minor_units_round_trip_through_decimal(minor: int, currency: str) -> None:
    money = Money(amount_minor=minor, currency=currency)
    assert Money.from_decimal(money.to_decimal(), currency) == money


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_addition_and_subtraction_are_exact(a: int, b: int) -> None:
    x, y = Money(amount_minor=a, currency="EUR"), Money(amount_minor=b, currency="EUR")
    assert (x + y - y) == x
    assert (x + y).to_decimal() == x.to_decimal() + y.to_decimal()
