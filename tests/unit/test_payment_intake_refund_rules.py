"""Which flagged payments are refunded and why, and the policy knobs of status sync and
refunds (pure)."""

from __future__ import annotations

import pytest

from payment_intake.domain.policy import FULL_PAYMENT_PORTAL, MerchantPolicies, PaymentPolicy
from payment_intake.domain.refunds import MESSAGES, refund_reason


def test_money_after_the_end_is_a_double_payment_when_the_invoice_was_paid_otherwise_late() -> None:
    assert refund_reason("succeeded_after_end", invoice_already_paid=True) == "double_payment"
    assert refund_reason("succeeded_after_end", invoice_already_paid=False) == "late_payment"


def test_another_amount_is_refunded_as_a_mismatch_whatever_the_invoice() -> None:
    assert refund_reason("amount_mismatch", invoice_already_paid=False) == "amount_mismatch"
    assert refund_reason("amount_mismatch", invoice_already_paid=True) == "amount_mismatch"


@pytest.mark.parametrize(
    "flag", ["callback_unknown_payment", "callback_account_mismatch", "callback_unknown_refund"]
)
def test_flags_that_are_not_about_money_refund_nothing(flag: str) -> None:
    assert refund_reason(flag, invoice_already_paid=False) is None


def test_every_refund_reason_has_a_message_a_portal_can_show() -> None:
    assert set(MESSAGES) == {"double_payment", "late_payment", "amount_mismatch"}


def test_presets_refund_automatically_and_sync_after_ten_minutes() -> None:
    assert FULL_PAYMENT_PORTAL.auto_refund is True
    assert FULL_PAYMENT_PORTAL.status_sync_after_s == 600


def test_a_merchant_policy_may_leave_refunds_to_an_operator_and_sync_sooner() -> None:
    policies = MerchantPolicies.from_config(
        {
            "policies": {
                "manual": {"preset": "partial-multi-portal", "auto_refund": False, "status_sync_after_s": 60}
            },
            "merchants": {"m": {"policy": "manual", "accounts": ["C1"]}},
        }
    )
    manual = policies.for_account("C1")
    assert (manual.auto_refund, manual.status_sync_after_s, manual.partial_payment) == (False, 60, True)
    assert policies.for_account("C2").auto_refund is True


def test_a_deployment_wide_threshold_overrides_every_policy() -> None:
    policies = MerchantPolicies.from_config(
        {"merchants": {"m": {"policy": "partial-multi-portal", "accounts": ["C1"]}}}
    ).with_status_sync_after(2)
    assert {p.status_sync_after_s for p in policies.all()} == {2}
    assert policies.for_account("C1").name == "partial-multi-portal"


def test_a_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="status_sync_after_s"):
        PaymentPolicy("bad", False, False, False, frozenset({"card"}), status_sync_after_s=0)
