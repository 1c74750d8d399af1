"""Money as the portal writes and reads it: the one formatter every page, cell, dialog
total and remittance line goes through, from integer minor units and the currency's
exponent (never a float)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from payments_contracts.money import CurrencyMismatch, Money, TooManyDecimals, UnknownCurrency

SYMBOLS = {"USD": "$", "CAD": "CA$", "EUR": "€", "GBP": "£"}


def show_money(amount_minor: int, currency: str) -> str:
    """$1,250.00 (the seeds' way of writing amounts); a currency without a symbol
    leads with its code (JPY 1,999)."""
    value = Money(amount_minor=amount_minor, currency=currency).to_decimal()
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{value:,}" if symbol else f"{currency} {value:,}"


def plain_amount(amount_minor: int, currency: str) -> str:
    """The amount as an amount field holds it (1250.00): no symbol, no grouping."""
    return str(Money(amount_minor=amount_minor, currency=currency).to_decimal())


class BadAmount(ValueError):
    pass


def parse_amount(text: str, currency: str) -> Money:
    """A payment amount as a customer types it ("1,250.00", "$500", "CA$20")."""
    cleaned = text.strip().replace(",", "")
    for mark in (SYMBOLS.get(currency), currency):
        if mark and cleaned.startswith(mark):
            cleaned = cleaned.removeprefix(mark).strip()
    try:
        return Money.from_decimal(Decimal(cleaned), currency)
    except (ArithmeticError, ValueError, TooManyDecimals, UnknownCurrency):
        raise BadAmount(f"Enter an amount like 500.00 (not {text!r}).") from None


def total_of(amounts: Iterable[tuple[str, str]]) -> Money:
    """The sum of (typed amount, currency) pairs, e.g. the lines of the Make a Payment
    dialog; amounts of different currencies are refused, never added."""
    total: Money | None = None
    for text, currency in amounts:
        amount = parse_amount(text, currency)
        try:
            total = amount if total is None else total + amount
        except CurrencyMismatch:
            raise BadAmount("Select invoices of one currency.") from None
    if total is None:
        raise BadAmount("Select the invoices to pay.")
    return total
