"""Pay status rules of the read model (docs/product.md, "Pay status")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from status_projector.domain.model import Invoice, Problem, Restriction
from status_projector.domain.status import (
    InvoiceFacts,
    NotPayableReason,
    PaymentState,
    PayStatus,
    Transition,
    account_button_hidden_because,
    account_pay_button,
    balance,
    pay_button,
    standing,
    transition,
)

OPEN = InvoiceFacts(
    erp_status="open",
    total_minor=125_000,
    open_amount_minor=125_000,
    posted_refs=frozenset(),
    succeeded={},
    registration="registered",
    closed_reason=None,
    restricted=False,
    current_payment_state=None,
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_registered_open_invoice_with_balance_is_payable() -> None:
    s = standing(OPEN)
    assert (s.pay_status, s.not_payable_reason, s.balance_minor) == (
        PayStatus.PAYABLE,
        None,
        125_000,
    )


def test_synced_but_not_registered_is_not_payable_not_registered() -> None:
    s = standing(OPEN._replace(registration=None))
    assert (s.pay_status, s.not_payable_reason) == (
        PayStatus.NOT_PAYABLE,
        NotPayableReason.NOT_REGISTERED,
    )


def test_registration_failure_is_its_own_reason() -> None:
    s = standing(OPEN._replace(registration="failed"))
    assert s.not_payable_reason is NotPayableReason.REGISTRATION_FAILED


@pytest.mark.parametrize(
    "state", [PaymentState.REQUESTED, PaymentState.CHECKOUT_OPEN, PaymentState.PROCESSING]
)
def test_open_checkout_or_processing_payment_makes_it_pending(state: PaymentState) -> None:
    assert standing(OPEN._replace(current_payment_state=state)).pay_status is PayStatus.PENDING


@pytest.mark.parametrize("state", [PaymentState.FAILED, PaymentState.CANCELLED, PaymentState.EXPIRED])
def test_ended_checkout_makes_it_payable_again(state: PaymentState) -> None:
    assert standing(OPEN._replace(current_payment_state=state)).pay_status is PayStatus.PAYABLE


def test_succeeded_payment_of_whole_balance_is_paid_with_zero_balance() -> None:
    s = standing(OPEN._replace(succeeded={"p1": 125_000}, current_payment_state=PaymentState.SUCCEEDED))
    assert (s.pay_status, s.balance_minor) == (PayStatus.PAID, 0)


def test_partial_payment_is_partially_paid_and_keeps_the_pay_button() -> None:
    s = standing(OPEN._replace(succeeded={"p1": 25_000}, current_payment_state=PaymentState.SUCCEEDED))
    assert (s.pay_status, s.balance_minor) == (PayStatus.PARTIALLY_PAID, 100_000)
    assert pay_button(s.pay_status, s.not_payable_reason, provider_configured=True) == (True, None)


def test_payment_posted_by_the_erp_is_not_subtracted_twice() -> None:
    # The ERP posted our payment p1 (reference = our payment id): open amount already reflects it.
    facts = OPEN._replace(open_amount_minor=100_000, posted_refs=frozenset({"p1"}), succeeded={"p1": 25_000})
    assert standing(facts).balance_minor == 100_000
    assert standing(facts).pay_status is PayStatus.PARTIALLY_PAID


def test_balance_subtracts_only_unposted_successes_and_is_never_negative() -> None:
    assert balance(100, {"a": 30, "b": 50}, ["b"]) == 70
    assert balance(100, {"a": 130}, []) == 0


def test_zero_balance_without_any_payment_is_not_payable_zero_balance() -> None:
    s = standing(OPEN._replace(open_amount_minor=0))
    assert (s.pay_status, s.not_payable_reason) == (
        PayStatus.NOT_PAYABLE,
        NotPayableReason.ZERO_BALANCE,
    )


def test_zero_balance_after_erp_posted_payment_is_paid() -> None:
    assert (
        standing(OPEN._replace(open_amount_minor=0, posted_refs=frozenset({"chk-1"}))).pay_status
        is PayStatus.PAID
    )


def test_cancelled_invoice_is_not_payable_with_zero_balance() -> None:
    for facts in (OPEN._replace(erp_status="cancelled"), OPEN._replace(closed_reason="cancelled")):
        s = standing(facts)
        assert (s.pay_status, s.not_payable_reason, s.balance_minor) == (
            PayStatus.NOT_PAYABLE,
            NotPayableReason.CANCELLED,
            0,
        )


def test_closed_with_balance_is_not_payable_closed() -> None:
    s = standing(OPEN._replace(closed_reason="missing_from_snapshot"))
    assert s.not_payable_reason is NotPayableReason.CLOSED


def test_restricted_by_policy_is_not_payable_restricted_and_hides_the_button() -> None:
    s = standing(OPEN._replace(restricted=True))
    assert (s.pay_status, s.not_payable_reason) == (PayStatus.NOT_PAYABLE, NotPayableReason.RESTRICTED)
    assert pay_button(s.pay_status, s.not_payable_reason, provider_configured=True) == (False, "restricted")


def test_restriction_does_not_hide_a_cancellation_or_a_pending_payment() -> None:
    assert standing(OPEN._replace(restricted=True, erp_status="cancelled")).not_payable_reason is (
        NotPayableReason.CANCELLED
    )
    pending = OPEN._replace(restricted=True, current_payment_state=PaymentState.PROCESSING)
    assert standing(pending).pay_status is PayStatus.PENDING


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (PayStatus.PAYABLE, None, (True, None)),
        (PayStatus.PENDING, None, (False, "pending")),
        (PayStatus.PAID, None, (False, "paid")),
        (PayStatus.NOT_PAYABLE, NotPayableReason.NOT_REGISTERED, (False, "not_registered")),
    ],
)
def test_pay_button_and_why_not(
    status: PayStatus, reason: NotPayableReason | None, expected: tuple[bool, str | None]
) -> None:
    assert pay_button(status, reason, provider_configured=True) == expected


def test_no_pay_button_anywhere_without_provider() -> None:
    assert pay_button(PayStatus.PAYABLE, None, provider_configured=False) == (
        False,
        "provider_not_configured",
    )
    assert account_pay_button(100, provider_configured=False) is False
    assert account_pay_button(0, provider_configured=True) is False
    assert account_pay_button(1, provider_configured=True) is True


def test_account_pay_is_not_offered_while_intake_would_refuse_it() -> None:
    """payment-intake refuses a balance payment while an invoice it covers is pending or
    not yet sent to the provider: the button is hidden then, with the reason."""
    assert account_pay_button(1, provider_configured=True, pending=1) is False
    assert account_pay_button(1, provider_configured=True, unregistered=1) is False
    why = account_button_hidden_because
    assert why(1, provider_configured=True, pending=1, unregistered=1) == "payment_pending"
    assert why(1, provider_configured=True, pending=0, unregistered=2) == "not_registered"
    assert why(0, provider_configured=True, pending=1, unregistered=0) == "zero_balance"
    assert why(5, provider_configured=False, pending=0, unregistered=0) == "provider_not_configured"
    assert why(5, provider_configured=True, pending=0, unregistered=0) is None


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (PaymentState.REQUESTED, PaymentState.CHECKOUT_OPEN, Transition.APPLY),
        (PaymentState.CHECKOUT_OPEN, PaymentState.SUCCEEDED, Transition.APPLY),
        (PaymentState.PROCESSING, PaymentState.CHECKOUT_OPEN, Transition.NO_OP),
        (PaymentState.SUCCEEDED, PaymentState.SUCCEEDED, Transition.NO_OP),
        (PaymentState.EXPIRED, PaymentState.SUCCEEDED, Transition.APPLY),
        (PaymentState.SUCCEEDED, PaymentState.FAILED, Transition.IMPOSSIBLE),
        (PaymentState.FAILED, PaymentState.CANCELLED, Transition.IMPOSSIBLE),
    ],
)
def test_payment_transitions(current: PaymentState, new: PaymentState, expected: Transition) -> None:
    assert transition(current, new) is expected


def _invoice() -> Invoice:
    return Invoice(
        account_id="A1",
        invoice_number="INV-1",
        currency="USD",
        order_number=None,
        po_number=None,
        invoice_date=date(2025, 1, 1),
        due_date=date(2025, 2, 1),
        total_minor=100,
        open_amount_minor=100,
        erp_status="open",
        erp_version=1,
        billing_country="US",
        registration="registered",
    )


def test_newest_problem_wins_even_when_an_older_one_is_replayed() -> None:
    invoice = _invoice()
    invoice.note_problem(Problem("card_declined", "declined", T0 + timedelta(seconds=5)))
    invoice.note_problem(Problem("amount_above_balance", "too much", T0))
    assert invoice.last_problem is not None
    assert invoice.last_problem.reason_code == "card_declined"


def test_current_payment_is_the_most_recently_requested() -> None:
    invoice = _invoice()
    invoice.follow_payment("p2", PaymentState.REQUESTED, 100, T0 + timedelta(seconds=1))
    invoice.follow_payment("p1", PaymentState.FAILED, 100, T0)
    assert invoice.current_payment_id == "p2"


def test_closed_by_older_erp_version_no_longer_applies_after_reopening() -> None:
    invoice = _invoice()
    invoice.closed_reason, invoice.closed_version = "missing_from_snapshot", 1
    invoice.refresh()
    assert invoice.not_payable_reason is NotPayableReason.CLOSED
    invoice.erp_version = 2
    invoice.refresh()
    assert invoice.pay_status is PayStatus.PAYABLE


def test_restriction_then_lift_returns_to_the_normal_rules() -> None:
    invoice = _invoice()
    invoice.restrict(Restriction(True, "distributor_country", "Pay through your distributor", T0))
    invoice.refresh()
    assert (invoice.pay_status, invoice.not_payable_reason) == (
        PayStatus.NOT_PAYABLE,
        NotPayableReason.RESTRICTED,
    )
    invoice.restrict(Restriction(False, None, None, T0 + timedelta(seconds=1)))
    invoice.refresh()
    assert (invoice.pay_status, invoice.not_payable_reason) == (PayStatus.PAYABLE, None)


def test_newest_restriction_decision_wins_in_any_order() -> None:
    restrict = Restriction(True, "distributor_country", "Pay through your distributor", T0)
    lift = Restriction(False, None, None, T0 + timedelta(seconds=1))
    for order in ((restrict, lift), (lift, restrict)):
        invoice = _invoice()
        for decision in order:
            invoice.restrict(decision)
        assert invoice.restriction == lift
        assert invoice.restricted is False
