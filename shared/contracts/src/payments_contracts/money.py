"""Money as integer minor units of an ISO 4217 currency.

Amounts of different currencies never mix: arithmetic across currencies raises.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict

# ISO 4217 active codes and their minor-unit exponents. Kept as data so the set of
# accepted currencies is reviewable in one place; anything not listed is refused.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES "
    "WST XCD XCG YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}


class UnknownCurrency(ValueError):
    """The code is not an active ISO 4217 currency."""


class TooManyDecimals(ValueError):
    """An amount has more decimal places than its currency allows."""


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined."""


def currency_exponent(code: str) -> int:
    try:
        return CURRENCY_EXPONENTS[code]
    except KeyError:
        raise UnknownCurrency(f"unknown currency {code!r}: not an active ISO 4217 code") from None


def _known_currency(code: str) -> str:
    currency_exponent(code)
    return code


CurrencyCode = Annotated[str, AfterValidator(_known_currency)]


class Money(BaseModel):
    """An amount in the currency's minor unit (cents for USD, yen for JPY)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: int
    currency: CurrencyCode

    @classmethod
    def from_decimal(cls, amount: Decimal, currency: str) -> Self:
        """Convert a major-unit decimal ("1250.00") exactly, refusing extra precision."""
        exponent = currency_exponent(currency)
        if not amount.is_finite():
            raise ValueError(f"amount {amount} is not a finite number")
        scaled = amount.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise TooManyDecimals(
                f"amount {amount} has more than {exponent} decimal places allowed for {currency}"
            )
        return cls(amount_minor=int(scaled), currency=currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-currency_exponent(self.currency))

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount_minor=self.amount_minor - other.amount_minor, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"
