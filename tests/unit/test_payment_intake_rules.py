"""Every rule of both seed portals, and the check order of docs/product.md, on the pure decision."""

from __future__ import annotations

import pytest

from payment_intake.domain.billing import GuestDetails
from payment_intake.domain.intake import (
    Accepted,
    AccountView,
    InvoiceFacts,
    PayRequest,
    RequestedInvoice,
    card_number_fields,
    decide,
)
from payment_intake.domain.policy import (
    FULL_PAYMENT_PORTAL,
    PARTIAL_MULTI_PORTAL,
    SEED_003_DISTRIBUTOR_COUNTRIES,
)
from payment_intake.domain.rejections import Reason, Rejection

SEED_000, SEED_003 = FULL_PAYMENT_PORTAL, PARTIAL_MULTI_PORTAL
GUEST = GuestDetails(
    email="ap@example.com",
    street="1 Main St",
    address_line2=None,
    country="US",
    postal_code="10001",
    phone_country_code="+1",
    phone_number="212 555 0100",
    name_on_card="Pat Payer",
)


def facts(number: str = "INV-1", open_minor: int = 125_000, **changes: object) -> InvoiceFacts:
    values: dict[str, object] = {
        "invoice_number": number,
        "currency": "USD",
        "open_amount_minor": open_minor,
        "erp_status": "open",
        "closed": False,
        "billing_country": "US",
        "registered": True,
    }
    values.update(changes)
    return InvoiceFacts(**values)  # type: ignore[arg-type]


def view(*invoices: InvoiceFacts, foreign: tuple[str, ...] = ()) -> AccountView:
    return AccountView(
        known=True, invoices={f.invoice_number: f for f in invoices}, foreign=frozenset(foreign)
    )


def one(number: str = "INV-1", amount: int | None = None, method: str = "guest_checkout") -> PayRequest:
    return PayRequest(
        "invoice",
        method,
        (RequestedInvoice(number, amount, None if amount is None else "USD"),),
        guest=GUEST if method in ("guest_checkout", "card") else None,
    )


def selected(*items: tuple[str, int | None], method: str = "card") -> PayRequest:
    return PayRequest(
        "selected_invoices",
        method,
        tuple(RequestedInvoice(n, a, None if a is None else "USD") for n, a in items),
    )


def reason(result: Rejection | Accepted) -> Reason:
    assert isinstance(result, Rejection), f"expected a rejection, got {result}"
    return result.reason


# --- seed 000: full-payment portal -------------------------------------------------------


def test_seed000_full_payment_only_a_partial_amount_is_refused():
    assert reason(decide(one(amount=100_000), view(facts()), SEED_000)) is Reason.PARTIAL_PAYMENT_NOT_ALLOWED


def test_seed000_full_payment_only_the_amount_is_the_whole_balance_when_omitted():
    result = decide(one(), view(facts()), SEED_000)
    assert result == Accepted("invoice", "guest_checkout", "USD", (("INV-1", 125_000),))


def test_seed000_full_payment_only_an_explicit_full_amount_is_accepted():
    assert isinstance(decide(one(amount=125_000), view(facts()), SEED_000), Accepted)


def test_seed000_pending_payment_blocks_a_new_one():
    result = decide(one(), view(facts(pending=True)), SEED_000)
    assert reason(result) is Reason.PAYMENT_PENDING
    assert "already pending" in result.message  # type: ignore[union-attr]


def test_seed000_invoice_not_sent_for_payment_processing_blocks():
    result = decide(one(), view(facts(registered=False)), SEED_000)
    assert reason(result) is Reason.INVOICE_NOT_REGISTERED
    assert "not been sent for payment processing" in result.message  # type: ignore[union-attr]


def test_seed000_several_invoices_in_one_payment_are_not_allowed():
    request = selected(("INV-1", None), ("INV-2", None), method="guest_checkout")
    assert (
        reason(decide(request, view(facts("INV-1"), facts("INV-2")), SEED_000))
        is Reason.SEVERAL_INVOICES_NOT_ALLOWED
    )


def test_seed000_account_balance_is_paid_through_the_payer_portal():
    request = PayRequest("account_balance", "payer_portal")
    result = decide(request, view(facts("INV-1", 100), facts("INV-2", 250), facts("INV-3", 0)), SEED_000)
    assert result == Accepted("account_balance", "payer_portal", "USD", (("INV-1", 100), ("INV-2", 250)))


def test_seed000_account_balance_by_guest_checkout_is_not_allowed():
    request = PayRequest("account_balance", "guest_checkout", guest=GUEST)
    assert reason(decide(request, view(facts()), SEED_000)) is Reason.METHOD_NOT_ALLOWED


def test_seed000_account_balance_zero_has_nothing_to_pay():
    request = PayRequest("account_balance", "payer_portal")
    assert reason(decide(request, view(facts(open_minor=0)), SEED_000)) is Reason.ZERO_BALANCE


def test_seed000_account_balance_with_a_pending_invoice_is_refused():
    request = PayRequest("account_balance", "payer_portal")
    result = decide(request, view(facts("INV-1"), facts("INV-2", pending=True)), SEED_000)
    assert reason(result) is Reason.PAYMENT_PENDING
    assert result.invoice_numbers == ("INV-2",)  # type: ignore[union-attr]


def test_seed000_account_balance_in_several_currencies_needs_a_currency():
    request = PayRequest("account_balance", "payer_portal")
    two = view(facts("INV-1"), facts("INV-2", currency="EUR"))
    assert reason(decide(request, two, SEED_000)) is Reason.CURRENCY_REQUIRED
    chosen = decide(PayRequest("account_balance", "payer_portal", currency="EUR"), two, SEED_000)
    assert isinstance(chosen, Accepted) and chosen.allocations == (("INV-2", 125_000),)


def test_seed000_methods_are_guest_checkout_and_payer_portal():
    assert isinstance(decide(one(method="payer_portal"), view(facts()), SEED_000), Accepted)
    assert reason(decide(one(method="card"), view(facts()), SEED_000)) is Reason.METHOD_NOT_ALLOWED


def test_seed000_guest_checkout_requires_valid_billing_details():
    bad = GuestDetails(
        email="not-an-email",
        street="",
        address_line2=None,
        country="ZZ",
        postal_code="!!",
        phone_country_code="+",
        phone_number="12",
        name_on_card="",
    )
    request = PayRequest("invoice", "guest_checkout", (RequestedInvoice("INV-1"),), guest=bad)
    result = decide(request, view(facts()), SEED_000)
    assert reason(result) is Reason.INVALID_BILLING_DETAILS
    for field in (
        "email",
        "street",
        "country",
        "postal_code",
        "phone_country_code",
        "phone_number",
        "name_on_card",
    ):
        assert field in result.message  # type: ignore[union-attr]


# --- seed 003: partial, multi-invoice, region-restricted portal --------------------------


def test_seed003_partial_payment_up_to_the_balance_is_accepted():
    result = decide(one(amount=40_000, method="card"), view(facts()), SEED_003)
    assert result == Accepted("invoice", "card", "USD", (("INV-1", 40_000),))
    assert isinstance(decide(one(amount=125_000, method="card"), view(facts()), SEED_003), Accepted)


def test_seed003_amount_above_the_balance_is_an_error():
    result = decide(one(amount=125_001, method="card"), view(facts()), SEED_003)
    assert reason(result) is Reason.AMOUNT_ABOVE_BALANCE
    assert "above the total amount due" in result.message  # type: ignore[union-attr]


@pytest.mark.parametrize("amount", [0, -5])
def test_seed003_amount_must_be_above_zero(amount):
    assert (
        reason(decide(one(amount=amount, method="card"), view(facts()), SEED_003))
        is Reason.AMOUNT_NOT_POSITIVE
    )


def test_seed003_multi_invoice_payment_pays_the_full_total_of_each():
    request = selected(("INV-1", None), ("INV-2", 500))
    result = decide(request, view(facts("INV-1"), facts("INV-2", 500)), SEED_003)
    assert result == Accepted("selected_invoices", "card", "USD", (("INV-1", 125_000), ("INV-2", 500)))
    assert result.total_minor == 125_500


def test_seed003_multi_invoice_payment_refuses_a_partial_amount_on_any_invoice():
    request = selected(("INV-1", None), ("INV-2", 499))
    result = decide(request, view(facts("INV-1"), facts("INV-2", 500)), SEED_003)
    assert reason(result) is Reason.MUST_PAY_FULL_BALANCE


def test_seed003_multi_invoice_payment_refuses_the_same_invoice_twice():
    request = selected(("INV-1", None), ("INV-1", None))
    assert reason(decide(request, view(facts("INV-1")), SEED_003)) is Reason.DUPLICATE_INVOICE_SELECTED


def test_seed003_multi_invoice_payment_needs_one_currency():
    request = selected(("INV-1", None), ("INV-2", None))
    result = decide(request, view(facts("INV-1"), facts("INV-2", currency="EUR")), SEED_003)
    assert reason(result) is Reason.CURRENCY_MISMATCH


@pytest.mark.parametrize(
    "country",
    [
        "ZA",
        "NG",
        "EG",
        "AU",
        "BR",
        "CA",
        "CN",
        "DE",
        "FR",
        "GB",
        "HK",
        "IN",
        "IL",
        "JP",
        "MO",
        "MY",
        "MX",
        "NZ",
        "PH",
        "SG",
        "KR",
        "TW",
        "TH",
        "VN",
    ],
)
def test_seed003_distributor_countries_must_pay_through_their_distributor(country):
    result = decide(one(method="card"), view(facts(billing_country=country)), SEED_003)
    assert reason(result) is Reason.PAY_THROUGH_DISTRIBUTOR
    assert "distributor" in result.message  # type: ignore[union-attr]


@pytest.mark.parametrize("country", ["US", "AR", "SA", "AE", "CL"])
def test_seed003_other_international_customers_and_the_us_pay_online(country):
    assert country not in SEED_003_DISTRIBUTOR_COUNTRIES
    assert isinstance(decide(one(method="card"), view(facts(billing_country=country)), SEED_003), Accepted)


def test_seed003_account_balance_payment_is_not_offered():
    request = PayRequest("account_balance", "card")
    assert reason(decide(request, view(facts()), SEED_003)) is Reason.ACCOUNT_BALANCE_NOT_ALLOWED


def test_seed003_methods_are_card_and_remittance():
    assert isinstance(decide(one(method="card"), view(facts()), SEED_003), Accepted)
    assert isinstance(decide(one(method="remittance"), view(facts()), SEED_003), Accepted)
    assert reason(decide(one(method="guest_checkout"), view(facts()), SEED_003)) is Reason.METHOD_NOT_ALLOWED
    assert reason(decide(one(method="payer_portal"), view(facts()), SEED_003)) is Reason.METHOD_NOT_ALLOWED


def test_seed003_only_an_associated_account_can_pay():
    unknown = AccountView(known=False, invoices={})
    assert reason(decide(one(method="card"), unknown, SEED_003)) is Reason.UNKNOWN_ACCOUNT


# --- both: ownership, state, and the order of the checks --------------------------------


def test_invoice_of_another_account_is_refused_without_saying_more():
    result = decide(one(), view(facts("INV-9"), foreign=("INV-1",)), SEED_000)
    assert reason(result) is Reason.INVOICE_OF_ANOTHER_ACCOUNT


def test_unknown_invoice_is_refused():
    assert reason(decide(one("NOPE"), view(facts()), SEED_000)) is Reason.INVOICE_NOT_FOUND


def test_zero_balance_is_refused():
    assert reason(decide(one(), view(facts(open_minor=0)), SEED_000)) is Reason.ZERO_BALANCE


def test_closed_invoice_is_refused():
    assert reason(decide(one(), view(facts(closed=True)), SEED_000)) is Reason.INVOICE_CLOSED
    assert reason(decide(one(), view(facts(erp_status="cancelled")), SEED_000)) is Reason.INVOICE_CLOSED


def test_balance_is_erp_open_amount_minus_unposted_succeeded_payments():
    invoice = facts(open_minor=1000, unposted_succeeded_minor=400)
    assert invoice.balance_minor == 600
    assert (
        reason(decide(one(amount=601, method="card"), view(invoice), SEED_003)) is Reason.AMOUNT_ABOVE_BALANCE
    )
    assert facts(open_minor=100, unposted_succeeded_minor=400).balance_minor == 0  # never negative


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        (
            {"registered": False, "open_minor": 0, "pending": True, "billing_country": "JP"},
            Reason.INVOICE_NOT_REGISTERED,
        ),
        ({"open_minor": 0, "pending": True, "billing_country": "JP"}, Reason.ZERO_BALANCE),
        ({"pending": True, "billing_country": "JP"}, Reason.PAYMENT_PENDING),
        ({"billing_country": "JP"}, Reason.AMOUNT_ABOVE_BALANCE),
    ],
)
def test_checks_run_in_design_order_registered_open_pending_amount_country_method(failing, expected):
    invoice = facts(**failing)
    request = one(
        amount=invoice.open_amount_minor + 1 if invoice.open_amount_minor else None, method="guest_checkout"
    )
    assert reason(decide(request, view(invoice), SEED_003)) is expected


def test_country_is_checked_before_the_method():
    result = decide(one(method="payer_portal"), view(facts(billing_country="JP")), SEED_003)
    assert reason(result) is Reason.PAY_THROUGH_DISTRIBUTOR


@pytest.mark.parametrize(
    "pan",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "6011000990139424"],
)
def test_a_card_number_in_any_field_is_found_by_field_name_not_value(pan):
    content = {"method": {"billing_address": {"street": f"card {pan} please"}}, "invoice_number": "INV-1"}
    where = card_number_fields(content)
    assert where == ["method.billing_address.street"]
    assert pan not in repr(where)


def test_digits_that_fail_luhn_are_not_card_numbers():
    assert card_number_fields({"phone": "4111111111111112", "po": "1234567890123"}) == []


def test_a_uuid_shaped_idempotency_key_is_an_identifier_not_a_card_number():
    key = "b739a034-1766-4131-9635-b159bbc440bc"  # "034-1766-4131-9635" passes Luhn
    assert card_number_fields({"idempotency_key": key}) == []
    assert card_number_fields({"idempotency_key": "k-4111111111111111"}) == ["idempotency_key"]


def test_a_message_keeps_the_invoice_number_as_the_erp_wrote_it() -> None:
    from payment_intake.domain.rejections import Reason, invoices_rejection

    message = invoices_rejection(Reason.AMOUNT_ABOVE_BALANCE, ("INV-2001",)).message
    assert message == "You cannot pay an amount above the total amount due of invoice INV-2001."
