"""The payment state machine: only legal moves; late, repeated and odd callbacks change nothing."""

from __future__ import annotations

import itertools

import pytest

from payment_intake.domain.payment import Happening, PaymentStatus, apply, next_status

S, H = PaymentStatus, Happening

LEGAL = {
    (S.REQUESTED, H.CHECKOUT_OPENED): S.CHECKOUT_OPEN,
    (S.REQUESTED, H.PROCESSING): S.PROCESSING,
    (S.REQUESTED, H.SUCCEEDED): S.SUCCEEDED,
    (S.REQUESTED, H.FAILED): S.FAILED,
    (S.REQUESTED, H.CANCELLED): S.CANCELLED,
    (S.REQUESTED, H.EXPIRED): S.EXPIRED,
    (S.CHECKOUT_OPEN, H.PROCESSING): S.PROCESSING,
    (S.CHECKOUT_OPEN, H.SUCCEEDED): S.SUCCEEDED,
    (S.CHECKOUT_OPEN, H.FAILED): S.FAILED,
    (S.CHECKOUT_OPEN, H.CANCELLED): S.CANCELLED,
    (S.CHECKOUT_OPEN, H.EXPIRED): S.EXPIRED,
    (S.PROCESSING, H.SUCCEEDED): S.SUCCEEDED,
    (S.PROCESSING, H.FAILED): S.FAILED,
}


@pytest.mark.parametrize(("status", "happening"), list(itertools.product(S, H)))
def test_only_the_legal_transitions_exist(status, happening):
    assert next_status(status, happening) == LEGAL.get((status, happening))


@pytest.mark.parametrize("end", [S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED])
def test_an_ended_payment_never_moves_again(end):
    assert all(next_status(end, h) is None for h in H)
    assert end.is_final and not end.is_open


def test_a_failure_after_success_is_late_and_changes_nothing():
    decision = apply(S.SUCCEEDED, H.FAILED)
    assert decision.to is None and decision.flag is None
    assert decision.note.startswith("late")


def test_processing_after_success_out_of_order_changes_nothing():
    assert apply(S.SUCCEEDED, H.PROCESSING).to is None


def test_a_processing_payment_does_not_expire_money_may_be_moving():
    assert apply(S.PROCESSING, H.EXPIRED).to is None


def test_success_with_the_asked_amount_succeeds():
    decision = apply(
        S.CHECKOUT_OPEN,
        H.SUCCEEDED,
        asked_minor=500,
        asked_currency="USD",
        confirmed_minor=500,
        confirmed_currency="USD",
    )
    assert decision.to is S.SUCCEEDED and decision.flag is None


@pytest.mark.parametrize(("minor", "currency"), [(499, "USD"), (501, "USD"), (500, "EUR"), (None, None)])
def test_a_confirmed_amount_other_than_asked_is_flagged_and_not_accepted(minor, currency):
    decision = apply(
        S.CHECKOUT_OPEN,
        H.SUCCEEDED,
        asked_minor=500,
        asked_currency="USD",
        confirmed_minor=minor,
        confirmed_currency=currency,
    )
    assert decision.to is S.PROCESSING  # still pending: nobody can pay it again meanwhile
    assert decision.flag is not None and decision.flag.reason_code == "amount_mismatch"


def test_an_amount_mismatch_on_a_processing_payment_keeps_it_processing():
    decision = apply(
        S.PROCESSING,
        H.SUCCEEDED,
        asked_minor=500,
        asked_currency="USD",
        confirmed_minor=1,
        confirmed_currency="USD",
    )
    assert decision.to is None and decision.flag is not None


@pytest.mark.parametrize("ended", [S.EXPIRED, S.CANCELLED, S.FAILED])
def test_money_moving_after_we_ended_the_payment_is_flagged(ended):
    decision = apply(
        ended,
        H.SUCCEEDED,
        asked_minor=500,
        asked_currency="USD",
        confirmed_minor=500,
        confirmed_currency="USD",
    )
    assert decision.to is None
    assert decision.flag is not None and decision.flag.reason_code == "succeeded_after_end"


def test_a_repeated_success_is_neither_applied_nor_flagged():
    decision = apply(
        S.SUCCEEDED,
        H.SUCCEEDED,
        asked_minor=500,
        asked_currency="USD",
        confirmed_minor=500,
        confirmed_currency="USD",
    )
    assert decision.to is None and decision.flag is None
