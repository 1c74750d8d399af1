"""Guest-checkout details (seed 000's billing address and name on card), validated.

What the customer typed is judged here so a bad value is a rejection the portal can
show, not a dead letter. Messages never echo the value: it may be personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

# ISO 3166-1 alpha-2, officially assigned codes.
ISO_COUNTRIES = frozenset(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW".split()
)

_POSTAL_BY_COUNTRY = {
    "US": re.compile(r"^\d{5}(-\d{4})?$"),
    "CA": re.compile(r"^[A-Z]\d[A-Z] ?\d[A-Z]\d$"),
    "DE": re.compile(r"^\d{5}$"),
    "FR": re.compile(r"^\d{5}$"),
    "GB": re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$"),
}
_POSTAL_ANY = re.compile(r"^[A-Z0-9][A-Z0-9 -]{1,9}$")
_PHONE_COUNTRY_CODE = re.compile(r"^\+?[1-9]\d{0,3}$")
_PHONE_NUMBER = re.compile(r"^[0-9 ()./-]+$")
_NAME = re.compile(r"^[^\d<>{}\[\]\\|@#$%^*=_~`]+$")


@dataclass(frozen=True)
class BillingProblem:
    field: str
    message: str


@dataclass(frozen=True)
class GuestDetails:
    email: str
    street: str
    address_line2: str | None
    country: str
    postal_code: str
    phone_country_code: str
    phone_number: str
    name_on_card: str | None


def _text(value: str | None, name: str, *, required: bool, max_len: int) -> BillingProblem | None:
    if value is None or not value.strip():
        return BillingProblem(name, f"Enter your {name.replace('_', ' ')}.") if required else None
    if len(value) > max_len:
        return BillingProblem(name, f"The {name.replace('_', ' ')} is too long.")
    return None


# The payer's address is validated once per process, not once per command: the same
# payer pays many invoices, and a validation costs ~100 µs of CPU (email_validator's
# IDNA and Unicode checks). Safe to remember: with deliverability off, the verdict is a
# pure function of the string (no DNS, no clock, library options fixed at import), and
# only the verdict is kept. Bounded, so a flood of distinct addresses cannot grow it.
@lru_cache(maxsize=8192)
def email_valid(email: str) -> bool:
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def billing_problems(details: GuestDetails, *, name_required: bool) -> list[BillingProblem]:
    """Every problem with the billing details, in form order (empty when all is well)."""
    problems: list[BillingProblem] = []
    if not email_valid(details.email):
        problems.append(BillingProblem("email", "Enter a valid email address."))
    for name, value, required, max_len in (
        ("street", details.street, True, 200),
        ("address_line2", details.address_line2, False, 200),
    ):
        if (problem := _text(value, name, required=required, max_len=max_len)) is not None:
            problems.append(problem)
    country = details.country.strip().upper()
    if country not in ISO_COUNTRIES:
        problems.append(BillingProblem("country", "Select a valid country."))
    postal = details.postal_code.strip().upper()
    if not _POSTAL_BY_COUNTRY.get(country, _POSTAL_ANY).match(postal):
        problems.append(BillingProblem("postal_code", "Enter a valid postal code for your country."))
    if not _PHONE_COUNTRY_CODE.match(details.phone_country_code.strip()):
        problems.append(BillingProblem("phone_country_code", "Enter a valid phone country code."))
    phone = details.phone_number.strip()
    digits = sum(c.isdigit() for c in phone)
    if not _PHONE_NUMBER.match(phone) or not 4 <= digits <= 15:
        problems.append(BillingProblem("phone_number", "Enter a valid phone number."))
    card_name = details.name_on_card
    if (name_required and (card_name is None or not card_name.strip())) or (
        card_name is not None and card_name.strip() and (len(card_name) > 100 or not _NAME.match(card_name))
    ):
        problems.append(BillingProblem("name_on_card", "Enter the name as it appears on your card."))
    return problems
