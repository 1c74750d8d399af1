"""Policy is configuration per merchant: presets, named policies, accounts mapped to merchants."""

from __future__ import annotations

import pytest

from payment_intake.domain.billing import GuestDetails, billing_problems, email_valid
from payment_intake.domain.policy import (
    FULL_PAYMENT_PORTAL,
    PARTIAL_MULTI_PORTAL,
    PRESETS,
    MerchantPolicies,
    PaymentPolicy,
)


def test_both_seed_presets_ship_and_are_selectable_by_name():
    assert set(PRESETS) == {"full-payment-portal", "partial-multi-portal"}
    assert MerchantPolicies.preset("partial-multi-portal").for_account("any") is PARTIAL_MULTI_PORTAL
    with pytest.raises(ValueError, match="unknown policy preset"):
        MerchantPolicies.preset("nope")


def test_a_portal_with_several_merchants_maps_accounts_to_their_merchants_policy():
    policies = MerchantPolicies.from_config(
        {
            "default": "full-payment-portal",
            "policies": {"eu-partial": {"preset": "partial-multi-portal", "distributor_countries": ["AU"]}},
            "merchants": {
                "acme-us": {"policy": "full-payment-portal", "accounts": ["C100"]},
                "acme-eu": {"policy": "eu-partial", "accounts": ["C300", "C301"]},
            },
        }
    )
    assert policies.for_account("C100") is FULL_PAYMENT_PORTAL
    eu = policies.for_account("C301")
    assert eu.name == "eu-partial" and eu.partial_payment and eu.distributor_countries == frozenset({"AU"})
    assert policies.for_account("someone-else") is FULL_PAYMENT_PORTAL


def test_an_account_in_two_merchants_is_a_configuration_error():
    with pytest.raises(ValueError, match="two merchants"):
        MerchantPolicies.from_config({"merchants": {"a": {"accounts": ["C1"]}, "b": {"accounts": ["C1"]}}})


def test_a_policy_with_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown payment methods"):
        PaymentPolicy("x", False, False, False, frozenset({"bitcoin"}))


def _details(**changes: object) -> GuestDetails:
    values: dict[str, object] = {
        "email": "ap@example.com",
        "street": "1 Main St",
        "address_line2": None,
        "country": "US",
        "postal_code": "10001",
        "phone_country_code": "+1",
        "phone_number": "(212) 555-0100",
        "name_on_card": "Pat Payer",
    }
    values.update(changes)
    return GuestDetails(**values)  # type: ignore[arg-type]


def test_valid_guest_billing_details_pass():
    assert billing_problems(_details(), name_required=True) == []
    assert billing_problems(_details(country="CA", postal_code="K1A 0B1"), name_required=True) == []
    assert billing_problems(_details(country="NL", postal_code="1011 AB"), name_required=True) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "a@"}, "email"),
        ({"country": "XX"}, "country"),
        ({"postal_code": "1234"}, "postal_code"),
        ({"phone_country_code": "abc"}, "phone_country_code"),
        ({"phone_number": "555"}, "phone_number"),
        ({"phone_number": "call me"}, "phone_number"),
        ({"name_on_card": "   "}, "name_on_card"),
        ({"street": "x" * 201}, "street"),
    ],
)
def test_invalid_guest_billing_details_name_the_field(changes, field):
    assert [p.field for p in billing_problems(_details(**changes), name_required=True)] == [field]


def test_an_address_is_validated_once_and_its_verdict_stays_the_same():
    email_valid.cache_clear()
    for _ in range(3):
        assert billing_problems(_details(email="payer@example.com"), name_required=True) == []
        assert [p.field for p in billing_problems(_details(email="payer@"), name_required=True)] == ["email"]
    info = email_valid.cache_info()
    assert (info.misses, info.hits) == (2, 4)
    assert info.maxsize is not None  # bounded: distinct addresses cannot grow it without end


def test_the_reloading_policies_answer_every_question_from_the_current_merchant_file(tmp_path):
    import json
    import time

    from payment_intake.adapters.merchant_file import ReloadingPolicies
    from payments_platform.merchants import WatchedMerchantFile

    path = tmp_path / "merchants.json"
    path.write_text(
        json.dumps({"merchants": {"acme": {"policy": "full-payment-portal", "accounts": ["C1"]}}})
    )
    policies = ReloadingPolicies(
        WatchedMerchantFile(path, lambda f: MerchantPolicies.from_config(f.raw), interval_s=0.0)
    )
    assert policies.accepts("C1") and not policies.accepts("C2")
    assert policies.for_account("C1") is FULL_PAYMENT_PORTAL
    assert policies.remittance_for("C1") is None
    assert [p.name for p in policies.all()] == ["full-payment-portal", "full-payment-portal"]
    time.sleep(0.01)
    path.write_text(
        json.dumps({"merchants": {"acme": {"policy": "partial-multi-portal", "accounts": ["C1", "C2"]}}})
    )
    assert policies.accepts("C2")
    assert policies.for_account("C2") is PARTIAL_MULTI_PORTAL
    assert [p.name for p in policies.all()] == ["full-payment-portal", "partial-multi-portal"]
    assert policies.with_status_sync_after(7).for_account("C2").status_sync_after_s == 7
