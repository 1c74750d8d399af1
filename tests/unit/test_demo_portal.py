"""The reference portal's rules: the Pay column, the check before the Pay dialog, money as
the seeds write it, which page each merchant gets, and its committed AsyncAPI document."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from demo_portal.domain.account import balances, refusal
from demo_portal.domain.money import BadAmount, parse_amount, plain_amount, show_money, total_of
from demo_portal.domain.pay_column import Cell, before_dialog, detail_button, pay_cell
from demo_portal.domain.portal import Style, portals_from_config
from demo_portal.domain.remittance import remittance_view
from demo_portal.entrypoints.asyncapi import DOCUMENT
from payments_contracts.money import Money
from payments_contracts.remittance import RemittanceDetails as MerchantRemittance
from payments_portal_client.read_model import AccountSummary, InvoiceOut


def invoice(
    status: str = "payable",
    balance: int = 125000,
    reason: str | None = None,
    button: bool = True,
    restriction: dict[str, Any] | None = None,
    button_reason: str | None = None,
    number: str = "INV-1001",
    currency: str = "USD",
) -> InvoiceOut:
    return InvoiceOut.model_validate(
        {
            "account_id": "C-1",
            "invoice_number": number,
            "order_number": "SO-1",
            "po_number": "PO-1",
            "invoice_date": date(2026, 10, 1),
            "due_date": date(2026, 10, 31),
            "currency": currency,
            "total": {"amount_minor": 125000, "currency": currency},
            "balance": {"amount_minor": balance, "currency": currency},
            "pay_status": status,
            "not_payable_reason": reason,
            "pay_button": button,
            "pay_button_reason": button_reason,
            "current_payment": None,
            "last_problem": None,
            "restriction": restriction,
            "refund": None,
            "freshness": {
                "version": 1,
                "event_time": datetime(2026, 10, 1, tzinfo=UTC),
                "projection_event_time": None,
                "offsets": [],
            },
        }
    )


@pytest.mark.parametrize(
    ("status", "reason", "button", "cell", "payable"),
    [
        ("payable", None, True, Cell.PAY, True),
        ("pending", None, False, Cell.PENDING, False),
        ("partially_paid", None, True, Cell.PARTIALLY_PAID, True),
        ("paid", None, False, Cell.PAID, False),
        ("not_payable", "zero_balance", False, Cell.NOT_PAYABLE, False),
    ],
)
def test_the_pay_column(status: str, reason: str | None, button: bool, cell: Cell, payable: bool) -> None:
    shown = pay_cell(invoice(status, reason=reason, button=button), Style.PAY_SELECTED)
    assert (shown.cell, shown.payable) == (cell, payable)


def test_seed_000_offers_pay_on_an_unregistered_invoice_and_explains_on_click() -> None:
    unregistered = invoice("not_payable", reason="not_registered", button=False)
    assert pay_cell(unregistered, Style.FULL_PAYMENT).cell == Cell.PAY
    assert pay_cell(unregistered, Style.PAY_SELECTED).cell == Cell.NOT_PAYABLE
    assert before_dialog(unregistered) == (
        "Invoice INV-1001 has not been sent for payment processing yet. Please try again later."
    )


def test_a_pending_invoice_answers_with_the_pending_error_instead_of_the_dialog() -> None:
    assert before_dialog(invoice("pending", button=False)) == (
        "A payment against invoice INV-1001 is already pending."
    )
    assert before_dialog(invoice("payable")) is None


def test_a_restricted_invoice_shows_the_policy_owners_message() -> None:
    message = "Customers in your country pay their invoices through their distributor."
    restricted = invoice(
        "not_payable",
        reason="restricted",
        button=False,
        restriction={"reason_code": "pay_through_distributor", "message": message},
    )
    shown = pay_cell(restricted, Style.PAY_SELECTED)
    assert (shown.cell, shown.reason) == (Cell.NOT_PAYABLE, message)
    assert before_dialog(restricted) == message


def test_the_seed_000_detail_view_has_one_pay_button_while_a_balance_remains() -> None:
    # Pending or not yet sent: the button shows, and the check before the dialog explains.
    for status, reason in (("payable", None), ("pending", None), ("not_payable", "not_registered")):
        shown = detail_button(invoice(status, reason=reason, button=False), Style.FULL_PAYMENT)
        assert shown is not None and (shown.label, shown.action) == ("Pay", "pay"), status
    assert detail_button(invoice("paid", balance=0, button=False), Style.FULL_PAYMENT) is None
    unconfigured = invoice("payable", button=False, button_reason="provider_not_configured")
    assert detail_button(unconfigured, Style.FULL_PAYMENT) is None


def test_the_seed_003_detail_view_offers_make_a_payment_on_what_can_be_selected() -> None:
    for status in ("payable", "partially_paid"):
        shown = detail_button(invoice(status), Style.PAY_SELECTED)
        assert shown is not None and (shown.label, shown.action) == ("MAKE A PAYMENT", "make-a-payment")
    assert detail_button(invoice("pending", button=False), Style.PAY_SELECTED) is None
    restricted = invoice("not_payable", reason="restricted", button=False)
    assert detail_button(restricted, Style.PAY_SELECTED) is None


def summary(*owed: tuple[str, int, bool], reason: str | None = None) -> AccountSummary:
    """The read model's account summary: (currency, balance, its PAY flag) per currency."""
    return AccountSummary.model_validate(
        {
            "account_id": "C-1",
            "balances": [
                {
                    "currency": currency,
                    "balance": {"amount_minor": amount, "currency": currency},
                    "pay_button": pay,
                    "pay_button_reason": None if pay else reason,
                    "invoices": 1,
                    "by_status": {},
                }
                for currency, amount, pay in owed
            ],
            "pay_button": any(pay for _, _, pay in owed),
            "pay_button_reason": None,
            "pay_button_message": None,
            "freshness": {"version": 1, "event_time": None, "projection_event_time": None, "offsets": []},
        }
    )


def test_account_pay_shows_while_the_read_model_offers_it_and_intake_would_take_it() -> None:
    payable = [invoice("payable", number="INV-1"), invoice("payable", number="INV-2", balance=5000)]
    [usd] = balances(summary(("USD", 130000, True)), payable, Style.FULL_PAYMENT)
    assert (usd.text, usd.pay, usd.note) == ("$1,300.00", True, None)
    assert refusal([usd], "USD") is None and refusal([usd], None) is None
    # Paid down to $0.00: the read model's flag goes, and PAY with it.
    [zero] = balances(summary(("USD", 0, False)), [], Style.FULL_PAYMENT)
    assert (zero.text, zero.pay, zero.note) == ("$0.00", False, None)
    assert refusal([zero], "USD") == "Your account has no balance to pay."
    # Seed 003 has no account PAY, whatever the flag says.
    [selected] = balances(summary(("USD", 130000, True)), payable, Style.PAY_SELECTED)
    assert not selected.pay and refusal([selected], "USD") is not None


def test_account_pay_is_held_back_while_an_invoice_is_pending_or_not_yet_sent() -> None:
    owed = summary(("USD", 130000, True))
    pending = [invoice("pending", number="INV-1", button=False), invoice("payable", number="INV-2")]
    [usd] = balances(owed, pending, Style.FULL_PAYMENT)
    assert (usd.pay, usd.note) == (False, "A payment against invoice INV-1 is already pending.")
    assert refusal([usd], "USD") == "A payment against invoice INV-1 is already pending."
    not_sent = [invoice("not_payable", reason="not_registered", number="INV-3", button=False)]
    [usd] = balances(owed, not_sent, Style.FULL_PAYMENT)
    assert (usd.pay, usd.note) == (
        False,
        "Invoice INV-3 has not been sent for payment processing yet. Please try again later.",
    )
    # A paid invoice (no balance) holds nothing back.
    [usd] = balances(owed, [invoice("paid", balance=0, button=False)], Style.FULL_PAYMENT)
    assert usd.pay


def test_account_pay_hidden_by_the_read_model_for_a_pending_invoice_names_it() -> None:
    hidden = summary(("USD", 130000, False), reason="payment_pending")
    pending = [invoice("pending", number="INV-1", button=False), invoice("payable", number="INV-2")]
    [usd] = balances(hidden, pending, Style.FULL_PAYMENT)
    assert (usd.pay, refusal([usd], "USD")) == (False, "A payment against invoice INV-1 is already pending.")
    # The summary is newer than the page's invoices: it still says why, without a number.
    [usd] = balances(hidden, [invoice("payable", number="INV-1")], Style.FULL_PAYMENT)
    assert (usd.pay, refusal([usd], "USD")) == (False, "A payment against this account is already pending.")
    # Hidden by the merchant's policy: the general message, whatever the invoices say.
    policy = summary(("USD", 130000, False), reason="account_balance_not_allowed")
    [usd] = balances(policy, pending, Style.FULL_PAYMENT)
    assert (usd.pay, usd.note) == (False, None)


def test_account_pay_is_per_currency() -> None:
    owed = summary(("USD", 125000, True), ("CAD", 5000, True))
    invoices = [
        invoice("pending", number="INV-1", button=False),
        invoice("payable", number="INV-C", currency="CAD"),
    ]
    usd, cad = balances(owed, invoices, Style.FULL_PAYMENT)
    assert (usd.pay, cad.pay, cad.text) == (False, True, "CA$50.00")
    assert refusal([usd, cad], "CAD") is None
    assert refusal([usd, cad], "USD") == "A payment against invoice INV-1 is already pending."
    several = "Your account has balances in several currencies: choose which one to pay."
    assert refusal([usd, cad], None) == several


def test_money_is_shown_and_read_as_the_seeds_write_it() -> None:
    assert show_money(125000, "USD") == "$1,250.00"
    assert show_money(168000, "USD") == "$1,680.00"
    assert show_money(1999, "JPY") == "JPY 1,999"
    assert show_money(1234567, "KWD") == "KWD 1,234.567"
    assert plain_amount(125000, "USD") == "1250.00"
    assert parse_amount("1,250.00", "USD") == Money(amount_minor=125000, currency="USD")
    assert parse_amount(" $500 ", "USD") == Money(amount_minor=50000, currency="USD")
    assert parse_amount("CA$20.5", "CAD") == Money(amount_minor=2050, currency="CAD")
    for bad in ("12.345", "abc", "", "€5"):
        with pytest.raises(BadAmount):
            parse_amount(bad, "USD")


def test_a_dialog_total_adds_minor_units_of_one_currency() -> None:
    assert total_of([("980.00", "USD"), ("700.00", "USD")]) == Money(amount_minor=168000, currency="USD")
    # 0.1 + 0.2 in floats is 0.30000000000000004; in cents it is 30.
    assert total_of([("0.10", "USD"), ("0.20", "USD")]) == Money(amount_minor=30, currency="USD")
    with pytest.raises(BadAmount, match="one currency"):
        total_of([("1.00", "USD"), ("1.00", "EUR")])
    with pytest.raises(BadAmount):
        total_of([])


REMITTANCE = MerchantRemittance.model_validate(
    {
        "check": {
            "payee": "Northwind Labs Inc.",
            "mailing_address": {
                "name": "Northwind Labs Inc., Accounts Receivable",
                "line1": "PO Box 7701",
                "city": "Chicago",
                "region": "IL",
                "postal_code": "60680",
                "country": "US",
            },
        },
        "wire": {
            "bank_name": "First Demo Bank",
            "account_name": "Northwind Labs Inc.",
            "account_number": "000123456789",
            "swift_bic": "FDBKUS33",
            "iban": "DE89370400440532013000",
        },
    }
)


def test_remittance_details_are_labelled_lines_in_the_portals_money() -> None:
    amount = Money(amount_minor=168000, currency="USD")
    wire = remittance_view("wire", amount, "A-1 INV-1 INV-2", REMITTANCE, "Pay 1680.00 USD ...")
    assert wire.title == "Remittance details (wire)"
    assert wire.lines == (
        ("Amount", "$1,680.00"),
        ("Reference", "A-1 INV-1 INV-2"),
        ("Bank", "First Demo Bank"),
        ("Account name", "Northwind Labs Inc."),
        ("Account number", "000123456789"),
        ("SWIFT/BIC", "FDBKUS33"),
        ("IBAN", "DE89370400440532013000"),
    )
    assert wire.note is None
    check = remittance_view("check", amount, "A-1 INV-1", REMITTANCE, "...")
    assert check.lines[2:] == (
        ("Payable to", "Northwind Labs Inc."),
        ("Mail to", "Northwind Labs Inc., Accounts Receivable\nPO Box 7701\nChicago, IL 60680\nUS"),
    )


def test_remittance_with_only_a_payee_asks_it_for_the_bank_details() -> None:
    payee_only = MerchantRemittance.model_validate({"check": {"payee": "Accounts Receivable"}})
    amount = Money(amount_minor=50000, currency="USD")
    ach = remittance_view("ach", amount, "A-1 INV-1", payee_only, "Pay 500.00 USD ...")
    assert ach.title == "Remittance details (ACH)"
    assert ach.lines[-1] == ("Pay to", "Accounts Receivable")
    assert ach.note == "Ask Accounts Receivable for the bank details."
    # An answer without structured details (an older payment-intake): its message only.
    bare = remittance_view(None, None, None, None, "Pay 500.00 USD to ...")
    assert (bare.lines, bare.note) == ((), "Pay 500.00 USD to ...")


def test_each_merchant_gets_the_page_its_policy_needs() -> None:
    config = {
        "merchants": {
            "m000": {"policy": "full-payment-portal", "accounts": ["C-1"]},
            "m003": {"policy": "partial-multi-portal", "accounts": ["A-1", "A-2"]},
        }
    }
    portals = portals_from_config(config, {"m000": "key-0"}, sandbox=True)
    assert portals.merchant_of("C-1").style == Style.FULL_PAYMENT  # type: ignore[union-attr]
    m003 = portals.merchant_of("A-2")
    assert m003 is not None and m003.style == Style.PAY_SELECTED and m003.api_key == "sandbox_key_m003"
    assert portals.merchant_of("X") is None
    with pytest.raises(ValueError, match="no API key"):
        portals_from_config(config, {"m000": "key-0"}, sandbox=False)


def test_committed_asyncapi_document_is_current() -> None:
    # Regenerate with `make contracts` (python -m demo_portal.entrypoints.asyncapi).
    assert not DOCUMENT.is_stale(), f"stale: run {DOCUMENT.regenerate}"


def test_outcomes_become_what_the_page_does_next() -> None:
    import uuid

    from demo_portal.handlers import answer
    from payments_contracts.payments import Allocation
    from payments_portal_client import Accepted, Rejected, RemittanceDetails

    usd = Money(amount_minor=50000, currency="USD")
    accepted = answer(
        Accepted(
            uuid.uuid4(),
            uuid.uuid4(),
            "invoice",
            "card",
            (Allocation(invoice_number="INV-1", amount=usd),),
            usd,
            checkout_url="http://provider/checkout/co_1",
        )
    )
    assert (accepted.outcome, accepted.checkout_url, accepted.invoice_numbers) == (
        "accepted",
        "http://provider/checkout/co_1",
        ("INV-1",),
    )
    refused = answer(Rejected(uuid.uuid4(), "amount_above_balance", "You cannot pay ...", ("INV-1",)))
    assert (refused.outcome, refused.reason_code) == ("rejected", "amount_above_balance")
    remit = answer(RemittanceDetails(uuid.uuid4(), "Pay 500.00 USD to ...", ("INV-1",)))
    assert (remit.outcome, remit.message) == ("remittance", "Pay 500.00 USD to ...")
