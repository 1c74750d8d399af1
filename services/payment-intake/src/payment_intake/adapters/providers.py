"""The provider port as each merchant chose it: the merchant file's `provider` (sandbox or
stripe) decides, per account, which connector takes the call, so one deployment runs
sandbox and Stripe merchants side by side. The file is read again when it changes; a
Stripe merchant added to it gets its connector on its first call.

Moving a merchant to another provider while its payments are open is not supported:
their checkouts live at the old provider (let them end first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from payment_intake.adapters.provider import ProviderClient
from payment_intake.adapters.stripe_checkouts import StripeCheckouts
from payment_intake.domain.payment import Payment
from payment_intake.domain.provider import (
    CheckoutState,
    ClaimedCheckout,
    OpenedCheckout,
    ProviderPort,
    RefundState,
)
from payment_intake.domain.refunds import Refund
from payment_intake.settings import PaymentIntakeSettings
from payments_platform.merchants import MerchantFile, WatchedMerchantFile
from payments_platform.messaging import TransientError
from payments_platform.provider_credentials import StripeMerchant, stripe_merchant
from payments_platform.sandbox import UnsafeConfiguration

log = logging.getLogger(__name__)


class MerchantProviders:
    @classmethod
    def of(cls, settings: PaymentIntakeSettings) -> MerchantProviders:
        """The service's and its ops CLI's: one provider per merchant, from the same
        settings and the same merchant file (a start refuses a Stripe merchant without
        usable credentials)."""
        merchant_file = None
        if settings.merchant_config is not None:
            merchant_file = WatchedMerchantFile[MerchantFile](settings.merchant_config, lambda f: f).current
        return cls(
            ProviderClient(settings.provider_url, timeout_s=settings.provider_timeout_s),
            merchant_file,
            sandbox_mode=settings.sandbox,
            stripe_api_base=settings.stripe_api_base,
            timeout_s=settings.provider_timeout_s,
        )

    def __init__(
        self,
        sandbox: ProviderClient,
        merchant_file: Callable[[], MerchantFile] | None,
        *,
        sandbox_mode: bool,
        stripe_api_base: str,
        timeout_s: float,
    ) -> None:
        self.sandbox = sandbox
        self._file = merchant_file
        self._sandbox_mode = sandbox_mode
        self._api_base = stripe_api_base
        self._timeout_s = timeout_s
        self._stripe: dict[str, StripeCheckouts] = {}
        self._checked: dict[str, StripeMerchant] = {}
        for name in self._stripe_names():  # a missing credential stops the start, not a payment
            self.stripe_merchant(name)

    def _stripe_names(self) -> list[str]:
        if self._file is None:
            return []
        return [m.name for m in self._file().merchants if m.provider == "stripe"]

    def stripe_merchant(self, name: str) -> StripeMerchant:
        known = self._checked.get(name)
        if known is None:
            assert self._file is not None
            entry = self._file().entry(name)
            if entry is None:
                raise KeyError(name)
            known = self._checked[name] = stripe_merchant(
                entry, sandbox=self._sandbox_mode, environ=os.environ
            )
        return known

    def stripe_merchants(self) -> Mapping[str, StripeMerchant]:
        """Every Stripe merchant of the file as it is now (the webhook endpoint's secrets)."""
        found = {}
        for name in self._stripe_names():
            try:
                found[name] = self.stripe_merchant(name)
            except UnsafeConfiguration as exc:
                log.error(
                    "Stripe merchant without usable credentials", extra={"merchant": name, "error": str(exc)}
                )
        return found

    def merchant_of(self, account_id: str) -> str | None:
        return None if self._file is None else self._file().merchant_of(account_id)

    def for_account(self, account_id: str) -> ProviderPort:
        if self._file is None:
            return self.sandbox
        merchants = self._file()
        if merchants.provider_of(account_id) != "stripe":
            return self.sandbox
        name = merchants.merchant_of(account_id)
        assert name is not None
        connector = self._stripe.get(name)
        if connector is None:
            try:
                merchant = self.stripe_merchant(name)
            except UnsafeConfiguration as exc:
                # Ours to fix, not the payer's fault: asked again later, loudly.
                log.error("Stripe merchant without usable credentials", extra={"merchant": name})
                raise TransientError(f"merchant {name}: {exc}") from exc
            connector = self._stripe[name] = StripeCheckouts(
                merchant, api_base=self._api_base, timeout_s=self._timeout_s
            )
        return connector

    async def open_checkout(self, payment: Payment) -> OpenedCheckout:
        return await self.for_account(payment.account_id).open_checkout(payment)

    async def checkout_state(self, checkout: ClaimedCheckout) -> CheckoutState:
        return await self.for_account(checkout.account_id).checkout_state(checkout)

    async def cancel_checkout(self, checkout: ClaimedCheckout) -> CheckoutState:
        return await self.for_account(checkout.account_id).cancel_checkout(checkout)

    async def refund(self, refund: Refund) -> RefundState:
        return await self.for_account(refund.account_id).refund(refund)

    async def refund_state(self, refund: Refund) -> RefundState:
        return await self.for_account(refund.account_id).refund_state(refund)

    async def close(self) -> None:
        await self.sandbox.close()
        for connector in self._stripe.values():
            await connector.close()
