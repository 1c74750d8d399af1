"""The merchant policies as the merchant file says now: edited while the service runs
(an account added to a merchant, a policy changed), the file is read again within a
second, without a restart. A file that stops parsing keeps the last good policies."""

from __future__ import annotations

from typing import Any, cast

from payment_intake.domain.policy import MerchantPolicies
from payment_intake.settings import PaymentIntakeSettings
from payments_shared.merchants import MerchantFile, WatchedMerchantFile


class ReloadingPolicies:
    """Stands in for MerchantPolicies: every attribute is the current file's."""

    def __init__(self, watch: WatchedMerchantFile[MerchantPolicies]) -> None:
        self._watch = watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._watch.current(), name)


def watched_policies(settings: PaymentIntakeSettings) -> MerchantPolicies:
    assert settings.merchant_config is not None

    def build(merchants: MerchantFile) -> MerchantPolicies:
        policies = MerchantPolicies.from_config(merchants.raw, default_preset=settings.policy)
        if settings.status_sync_after_s is not None:
            policies = policies.with_status_sync_after(settings.status_sync_after_s)
        return policies

    return cast(MerchantPolicies, ReloadingPolicies(WatchedMerchantFile(settings.merchant_config, build)))
