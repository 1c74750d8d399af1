"""The merchant policies as the merchant file says now: edited while the service runs
(an account added to a merchant, a policy changed), the file is read again within a
second, without a restart. A file that stops parsing keeps the last good policies."""

from __future__ import annotations

from typing import cast

from payment_intake.domain.policy import MerchantPolicies, PaymentPolicy
from payment_intake.settings import PaymentIntakeSettings
from payments_contracts.remittance import RemittanceDetails
from payments_platform.merchants import MerchantFile, WatchedMerchantFile


class ReloadingPolicies:
    """Stands in for MerchantPolicies: each question is answered by the current file's.

    Plain methods rather than `__getattr__`: they are asked several times per pay
    command, and a missed attribute lookup plus getattr costs more than a call."""

    def __init__(self, watch: WatchedMerchantFile[MerchantPolicies]) -> None:
        self._watch = watch

    def accepts(self, account_id: str) -> bool:
        return self._watch.current().accepts(account_id)

    def remittance_for(self, account_id: str) -> RemittanceDetails | None:
        return self._watch.current().remittance_for(account_id)

    def for_account(self, account_id: str) -> PaymentPolicy:
        return self._watch.current().for_account(account_id)

    def all(self) -> list[PaymentPolicy]:
        return self._watch.current().all()

    def with_status_sync_after(self, seconds: int) -> MerchantPolicies:
        return self._watch.current().with_status_sync_after(seconds)


def watched_policies(settings: PaymentIntakeSettings) -> MerchantPolicies:
    assert settings.merchant_config is not None

    def build(merchants: MerchantFile) -> MerchantPolicies:
        policies = MerchantPolicies.from_config(merchants.raw, default_preset=settings.policy)
        if settings.status_sync_after_s is not None:
            policies = policies.with_status_sync_after(settings.status_sync_after_s)
        return policies

    return cast(MerchantPolicies, ReloadingPolicies(WatchedMerchantFile(settings.merchant_config, build)))
