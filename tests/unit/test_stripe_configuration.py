"""Stripe credentials and amounts: where keys may come from and which are refused, and
our minor units in Stripe's units (pure; no network)."""

from __future__ import annotations

import pytest

from payments_platform.merchants import parse_merchant_file
from payments_platform.provider_credentials import (
    SANDBOX_STRIPE_SECRET_KEY,
    SANDBOX_STRIPE_WEBHOOK_SECRET,
    stripe_merchant,
    stripe_merchants,
)
from payments_platform.sandbox import UnsafeConfiguration
from payments_platform.stripe_support import NotRepresentable, from_stripe_amount, to_stripe_amount


def entry(**stripe: object):
    spec = {"accounts": ["A-1"], "provider": "stripe", **({"stripe": stripe} if stripe else {})}
    return parse_merchant_file({"merchants": {"acme": spec}}).merchants[0]


ENV = {
    "STRIPE_ACME_SECRET_KEY": "sk_test_51RealLookingTestKey",
    "STRIPE_ACME_WEBHOOK_SECRETS": "whsec_old, whsec_new",
    "STRIPE_ACME_ACCOUNT": "acct_1Connected",
}


def test_credentials_from_the_environment_with_two_secrets_and_a_connect_account() -> None:
    merchant = stripe_merchant(
        entry(credentials="env:ACME", return_url="https://p/"), sandbox=False, environ=ENV
    )
    assert merchant.credentials.webhook_secrets == ("whsec_old", "whsec_new")
    assert merchant.credentials.account == "acct_1Connected"
    assert "sk_test" not in repr(merchant)  # never in a log line


def test_credentials_from_a_secrets_file(tmp_path) -> None:
    secrets = tmp_path / "acme.yaml"
    secrets.write_text("secret_key: rk_live_51Restricted\nwebhook_secrets: [whsec_live]\n")
    merchant = stripe_merchant(entry(credentials=f"file:{secrets}", return_url="https://p/"), sandbox=False)
    assert merchant.credentials.live


def test_a_key_in_the_merchant_file_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="in the merchant file"):
        entry(secret_key="sk_live_51Oops")
    with pytest.raises(ValueError, match="in the merchant file"):
        entry(webhook_secrets=["whsec_oops"])


def test_no_default_outside_sandbox_mode_and_published_ones_refused_there() -> None:
    with pytest.raises(UnsafeConfiguration, match=r"needs stripe\.credentials"):
        stripe_merchant(entry(return_url="https://p/"), sandbox=False)
    published = {
        "STRIPE_ACME_SECRET_KEY": SANDBOX_STRIPE_SECRET_KEY,
        "STRIPE_ACME_WEBHOOK_SECRETS": SANDBOX_STRIPE_WEBHOOK_SECRET,
    }
    with pytest.raises(UnsafeConfiguration, match="published"):
        stripe_merchant(
            entry(credentials="env:ACME", return_url="https://p/"), sandbox=False, environ=published
        )
    with pytest.raises(UnsafeConfiguration, match="a Stripe secret key"):
        stripe_merchant(entry(credentials="env:ACME", return_url="https://p/"), sandbox=False, environ={})
    with pytest.raises(UnsafeConfiguration, match="return_url"):
        stripe_merchant(entry(credentials="env:ACME"), sandbox=False, environ=ENV)


def test_sandbox_mode_has_published_credentials_and_refuses_a_live_key() -> None:
    merchant = stripe_merchant(entry(), sandbox=True)
    assert merchant.credentials.secret_key == SANDBOX_STRIPE_SECRET_KEY
    live = {**ENV, "STRIPE_ACME_SECRET_KEY": "sk_live_51Real"}
    with pytest.raises(UnsafeConfiguration, match="live Stripe key in sandbox mode"):
        stripe_merchant(entry(credentials="env:ACME"), sandbox=True, environ=live)


def test_only_stripe_merchants_are_checked_and_providers_are_known() -> None:
    merchants = parse_merchant_file({"merchants": {"a": {"accounts": ["X"]}, "b": {"provider": "stripe"}}})
    assert list(stripe_merchants(merchants, sandbox=True)) == ["b"]
    assert merchants.provider_of("X") == "sandbox"
    with pytest.raises(ValueError, match="provider is one of"):
        parse_merchant_file({"merchants": {"a": {"provider": "paypal"}}})


@pytest.mark.parametrize(
    ("minor", "currency", "stripe_amount"),
    [
        (125_000, "USD", 125_000),  # two-decimal both
        (1_250, "JPY", 1_250),  # zero-decimal both
        (12_340, "KWD", 12_340),  # three-decimal both, last digit 0
        (500, "MGA", 5),  # ISO two-decimal, Stripe zero-decimal
        (5, "ISK", 500),  # ISO zero-decimal, Stripe two-decimal whole krónur
    ],
)
def test_amounts_in_stripes_units(minor: int, currency: str, stripe_amount: int) -> None:
    assert to_stripe_amount(minor, currency) == stripe_amount
    assert from_stripe_amount(stripe_amount, currency) == minor


@pytest.mark.parametrize(("minor", "currency"), [(12_345, "KWD"), (550, "MGA")])
def test_amounts_stripe_would_refuse_are_never_rounded(minor: int, currency: str) -> None:
    with pytest.raises(NotRepresentable):
        to_stripe_amount(minor, currency)
