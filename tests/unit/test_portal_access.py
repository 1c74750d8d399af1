"""Merchant API keys, the merchant file and the sandbox rules (pure, no I/O)."""

import pytest

from payment_intake.settings import PaymentIntakeSettings
from payments_platform.merchants import parse_merchant_file
from payments_platform.sandbox import SANDBOX_WEBHOOK_SECRET, UnsafeConfiguration, demo_api_key
from status_projector.domain.access import MerchantKeys, PortalKeys, digest_of, new_api_key
from status_projector.settings import portal_keys

OLD, NEW, OTHER = new_api_key(), new_api_key(), new_api_key()


def keys() -> PortalKeys:
    return PortalKeys(
        [
            MerchantKeys("north", frozenset({"N-1", "N-2"}), (digest_of(OLD), digest_of(NEW))),
            MerchantKeys("south", frozenset({"S-1"}), (digest_of(OTHER),)),
        ]
    )


def test_both_live_keys_of_a_merchant_read_its_accounts_only() -> None:
    for key in (OLD, NEW):
        tenant = keys().tenant_for(key)
        assert tenant is not None and tenant.merchant == "north"
        assert tenant.can_read("N-1") and not tenant.can_read("S-1")
    south = keys().tenant_for(OTHER)
    assert south is not None and south.can_read("S-1") and not south.can_read("N-2")


@pytest.mark.parametrize("presented", ["", "pk_nobody", OLD + " ", OLD[:-1], digest_of(OLD), "\ud800"])
def test_anything_but_a_configured_key_is_nobody(presented: str) -> None:
    assert keys().tenant_for(presented) is None


def test_keys_are_random_and_only_their_digest_is_configured() -> None:
    assert len({new_api_key() for _ in range(100)}) == 100
    assert digest_of(OLD).startswith("sha256:") and OLD not in digest_of(OLD)


def test_a_digest_that_is_not_sha256_hex_is_refused() -> None:
    with pytest.raises(ValueError, match="sha256"):
        PortalKeys([MerchantKeys("m", frozenset(), (OLD,))])  # the key itself, not its digest


def merchants(**api_keys: list[str]):  # type: ignore[no-untyped-def]
    return parse_merchant_file(
        {
            "merchants": {
                name: {"accounts": [f"{name}-1"], "api_keys": keys} for name, keys in api_keys.items()
            }
        }
    )


def test_outside_sandbox_mode_configured_keys_are_needed_and_demo_keys_refused() -> None:
    with pytest.raises(UnsafeConfiguration, match="no merchant"):
        portal_keys(merchants(north=[]), sandbox=False)
    with pytest.raises(UnsafeConfiguration, match="published demo key"):
        portal_keys(merchants(north=[digest_of(demo_api_key("north"))]), sandbox=False)
    configured = portal_keys(merchants(north=[digest_of(OLD)], south=[]), sandbox=False)
    assert configured.tenant_for(OLD) is not None
    assert configured.tenant_for(demo_api_key("north")) is None


def test_in_sandbox_mode_each_merchant_also_has_its_published_demo_key() -> None:
    sandbox = portal_keys(merchants(north=[], south=[]), sandbox=True)
    north = sandbox.tenant_for(demo_api_key("north"))
    assert north is not None and north.accounts == frozenset({"north-1"})


def test_an_account_belongs_to_one_merchant() -> None:
    with pytest.raises(ValueError, match="two merchants"):
        parse_merchant_file({"merchants": {"a": {"accounts": ["X"]}, "b": {"accounts": ["X"]}}})
    assert merchants(north=[]).merchant_of("north-1") == "north"


def intake(**env: str) -> PaymentIntakeSettings:
    return PaymentIntakeSettings.model_validate(env)


def test_webhook_secrets_rotate_and_have_no_default_outside_sandbox_mode() -> None:
    rotating = intake(PAYMENTS_WEBHOOK_SECRET="whsec_b2xk, whsec_bmV3\n")
    assert rotating.webhook_secrets() == ["whsec_b2xk", "whsec_bmV3"]
    with pytest.raises(UnsafeConfiguration, match="not set"):
        intake().webhook_secrets()
    with pytest.raises(UnsafeConfiguration, match="published"):
        intake(PAYMENTS_WEBHOOK_SECRET=f"whsec_bmV3 {SANDBOX_WEBHOOK_SECRET}").webhook_secrets()
    assert intake(PAYMENTS_SANDBOX="1").webhook_secrets() == [SANDBOX_WEBHOOK_SECRET]
    assert intake(PAYMENTS_SANDBOX="1", PAYMENTS_WEBHOOK_SECRET="whsec_bmV3").webhook_secrets() == [
        "whsec_bmV3"
    ]
