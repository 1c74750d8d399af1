"""The registration port as each merchant chose it: the merchant file's `provider` decides,
per account, which connector makes the account's invoices payable (the sandbox's batched
API, or Stripe), so sandbox and Stripe merchants run side by side. A batch is split by
connector and the answers put back in the order of the requests."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from invoice_sync.adapters.provider import HttpProvider, ProviderUnavailable
from invoice_sync.adapters.stripe_registrations import StripeRegistrations
from invoice_sync.domain.registration import Outcome, ProviderPort, RegistrationRequest, WithdrawalRequest
from payments_platform.merchants import MerchantFile
from payments_platform.provider_credentials import stripe_merchant
from payments_platform.sandbox import UnsafeConfiguration


class _Keyed(Protocol):
    @property
    def account_id(self) -> str: ...


R = TypeVar("R", bound=_Keyed)


class MerchantRegistrations:
    def __init__(
        self,
        sandbox: HttpProvider,
        merchant_file: Callable[[], MerchantFile] | None,
        *,
        sandbox_mode: bool,
        stripe_api_base: str,
        timeout_s: float,
    ) -> None:
        self._sandbox = sandbox
        self._file = merchant_file
        self._sandbox_mode = sandbox_mode
        self._api_base = stripe_api_base
        self._timeout_s = timeout_s
        self._stripe: dict[str, StripeRegistrations] = {}
        if merchant_file is not None:  # a missing credential stops the start, not a registration
            for entry in merchant_file().merchants:
                if entry.provider == "stripe":
                    stripe_merchant(entry, sandbox=sandbox_mode, environ=os.environ)

    def _connector(self, account_id: str) -> ProviderPort:
        if self._file is None:
            return self._sandbox
        merchants = self._file()
        name = merchants.merchant_of(account_id)
        if name is None or merchants.provider_of(account_id) != "stripe":
            return self._sandbox
        connector = self._stripe.get(name)
        if connector is None:
            entry = merchants.entry(name)
            assert entry is not None
            try:
                merchant = stripe_merchant(entry, sandbox=self._sandbox_mode, environ=os.environ)
            except UnsafeConfiguration as exc:
                raise ProviderUnavailable(f"merchant {name}: {exc}") from exc
            connector = self._stripe[name] = StripeRegistrations(
                merchant, api_base=self._api_base, timeout_s=self._timeout_s
            )
        return connector

    def _split(self, requests: Sequence[R]) -> list[tuple[ProviderPort, list[int]]]:
        groups: dict[int, tuple[ProviderPort, list[int]]] = {}
        for index, request in enumerate(requests):
            connector = self._connector(request.account_id)
            groups.setdefault(id(connector), (connector, []))[1].append(index)
        return list(groups.values())

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        for connector, indexes in self._split(requests):
            answers = await connector.register([requests[i] for i in indexes])
            for i, answer in zip(indexes, answers, strict=True):
                outcomes[i] = answer
        return [o for o in outcomes if o is not None]

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        for connector, indexes in self._split(requests):
            answers = await connector.withdraw([requests[i] for i in indexes])
            for i, answer in zip(indexes, answers, strict=True):
                outcomes[i] = answer
        return [o for o in outcomes if o is not None]

    async def aclose(self) -> None:
        await self._sandbox.aclose()
        for connector in self._stripe.values():
            await connector.aclose()
