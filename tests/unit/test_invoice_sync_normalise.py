"""Normalisation and validation of ERP documents: amounts, currencies, reasons."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoice_sync.domain.normalise import InvalidErpDocument, normalise, to_minor
from payments_contracts.erp import ErpInvoiceDocument, ErpPostedPayment
from payments_contracts.money import CURRENCY_EXPONENTS


def doc(**changes: Any) -> ErpInvoiceDocument:
    fields: dict[str, Any] = {
        "invoice_number": "INV-1",
        "version": 1,
        "order_number": "SO-1",
        "po_number": "PO-1",
        "invoice_date": date(2026, 11, 1),
        "due_date": date(2026, 12, 1),
        "currency": "USD",
        "total": Decimal("1250.00"),
        "open_amount": Decimal("1250.00"),
        "billing_country": "US",
    }
    fields.update(changes)
    return ErpInvoiceDocument(**fields)


def reason(**changes: Any) -> str:
    with pytest.raises(InvalidErpDocument) as caught:
        normalise(doc(**changes))
    return caught.value.reason_code


def test_a_document_becomes_minor_units_of_its_currency() -> None:
    details = normalise(
        doc(
            total=Decimal("1250.00"),
            open_amount=Decimal("1000.5"),
            posted_payments=[ErpPostedPayment(reference="PAY-1", amount=Decimal("249.50"))],
        )
    )
    assert (details.total_minor, details.open_minor) == (125000, 100050)
    assert details.posted_payments[0].amount_minor == 24950
    assert details.currency == "USD"


def test_currency_code_case_and_blank_references_are_normalised() -> None:
    details = normalise(doc(currency="eur", order_number="  ", po_number=" PO-9 "))
    assert details.currency == "EUR"
    assert details.order_number is None
    assert details.po_number == "PO-9"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"currency": "XXY"}, "unknown_currency"),
        ({"total": Decimal("10.005"), "open_amount": Decimal("1")}, "too_many_decimals"),
        (
            {"currency": "JPY", "total": Decimal("100.5"), "open_amount": Decimal(0)},
            "too_many_decimals",
        ),
        (
            {"currency": "KWD", "total": Decimal("1.0001"), "open_amount": Decimal(0)},
            "too_many_decimals",
        ),
        ({"total": Decimal("-1.00"), "open_amount": Decimal(0)}, "negative_amount"),
        ({"open_amount": Decimal("-0.01")}, "negative_amount"),
        ({"total": Decimal("10.00"), "open_amount": Decimal("10.01")}, "open_amount_above_total"),
        ({"due_date": date(2026, 10, 1)}, "due_date_before_invoice_date"),
        ({"total": Decimal("1e30"), "open_amount": Decimal(0)}, "amount_out_of_range"),
        (
            {"posted_payments": [ErpPostedPayment(reference="P", amount=Decimal("-1"))]},
            "negative_amount",
        ),
        (
            {
                "posted_payments": [
                    ErpPostedPayment(reference="P", amount=Decimal("1")),
                    ErpPostedPayment(reference="P", amount=Decimal("2")),
                ]
            },
            "duplicate_payment_reference",
        ),
    ],
)
def test_unusable_documents_are_refused_with_a_precise_reason(changes: dict[str, Any], expected: str) -> None:
    assert reason(**changes) == expected


def test_trailing_zeros_are_not_extra_precision() -> None:
    assert normalise(doc(total=Decimal("12.5000"), open_amount=Decimal("12.50"))).total_minor == 1250


currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))


@given(currency=currencies, minor=st.integers(min_value=0, max_value=10**15))
def test_amounts_within_the_currency_precision_round_trip_exactly(currency: str, minor: int) -> None:
    exponent = CURRENCY_EXPONENTS[currency]
    amount = Decimal(minor).scaleb(-exponent)
    assert to_minor(amount, exponent, currency, "total") == minor


@given(
    currency=currencies,
    minor=st.integers(min_value=0, max_value=10**12),
    extra=st.integers(min_value=1, max_value=9),
)
def test_one_more_significant_decimal_is_always_refused(currency: str, minor: int, extra: int) -> None:
    exponent = CURRENCY_EXPONENTS[currency]
    amount = Decimal(minor * 10 + extra).scaleb(-(exponent + 1))
    with pytest.raises(InvalidErpDocument) as caught:
        to_minor(amount, exponent, currency, "total")
    assert caught.value.reason_code == "too_many_decimals"


@given(
    total=st.integers(min_value=0, max_value=10**12),
    open_=st.integers(min_value=0, max_value=10**12),
)
def test_open_amount_is_accepted_exactly_when_not_above_total(total: int, open_: int) -> None:
    document = doc(total=Decimal(total).scaleb(-2), open_amount=Decimal(open_).scaleb(-2))
    if open_ <= total:
        details = normalise(document)
        assert (details.total_minor, details.open_minor) == (total, open_)
    else:
        with pytest.raises(InvalidErpDocument) as caught:
            normalise(document)
        assert caught.value.reason_code == "open_amount_above_total"
