"""What both services' Stripe connectors share: the client, amounts in Stripe's units,
which failures are worth retrying, and the account's Stripe Customer.

Retries are ours (`tried_a_few_times`), not the library's (`max_network_retries=0`): one
retry policy for every provider, and every request that moves money carries an
idempotency key derived from our own ids, so a retry - ours now, or another process's
after a crash - is the same request to Stripe.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import stripe

from payments_contracts.money import currency_exponent
from payments_platform.messaging import TransientError, tried_a_few_times
from payments_platform.provider_credentials import StripeCredentials

T = TypeVar("T")
STRIPE_API = "https://api.stripe.com"

# Stripe's zero-decimal currencies (its amount is whole units); every other currency is
# sent in hundredths, or thousandths for the three-decimal ones.
_STRIPE_ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
_STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
# ISK is zero-decimal by ISO 4217 but two-decimal in Stripe's API, whole krónur only.
_WHOLE_UNITS_ONLY = frozenset({"ISK"})


class NotRepresentable(ValueError):
    """An amount Stripe cannot take in this currency (fractions it refuses)."""


def _stripe_exponent(currency: str) -> int:
    if currency in _STRIPE_ZERO_DECIMAL:
        return 0
    if currency in _STRIPE_THREE_DECIMAL:
        return 3
    return 2


def _power(digits: int) -> int:
    return int(10**digits)


def to_stripe_amount(amount_minor: int, currency: str) -> int:
    """Our minor units (ISO 4217's exponent) as Stripe's `amount`; NotRepresentable when
    Stripe would refuse it (an MGA amount with iraimbilanja, a three-decimal amount whose
    last digit is not 0, fractional ISK)."""
    ours, theirs = currency_exponent(currency), _stripe_exponent(currency)
    if theirs >= ours:
        amount = amount_minor * _power(theirs - ours)
    else:
        amount, rest = divmod(amount_minor, _power(ours - theirs))
        if rest:
            raise NotRepresentable(f"{amount_minor} {currency} minor units have fractions Stripe refuses")
    if currency in _STRIPE_THREE_DECIMAL and amount % 10:
        raise NotRepresentable(f"Stripe takes {currency} amounts in whole hundredths (last digit 0)")
    if currency in _WHOLE_UNITS_ONLY and amount % 100:
        raise NotRepresentable(f"Stripe takes {currency} in whole units only")
    return amount


def from_stripe_amount(amount: int, currency: str) -> int:
    """Stripe's `amount` as our minor units; NotRepresentable if it has a fraction ours lacks."""
    ours, theirs = currency_exponent(currency), _stripe_exponent(currency)
    if ours >= theirs:
        return amount * _power(ours - theirs)
    whole, rest = divmod(amount, _power(theirs - ours))
    if rest:
        raise NotRepresentable(f"Stripe amount {amount} {currency} has a fraction of a minor unit")
    return whole


class StripeConnection:
    """The official client on its async httpx transport, acting on the merchant's Connect
    account when it has one; `close` releases its connections."""

    def __init__(self, credentials: StripeCredentials, *, api_base: str, timeout_s: float) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout_s)
        self.client = stripe.StripeClient(
            credentials.secret_key,
            stripe_account=credentials.account,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


class StripeRefused(Exception):
    """Stripe will not do it (a 4xx other than rate limiting): asking again will not help."""

    def __init__(self, code: str, message: str, http_status: int | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


def _transient(exc: stripe.StripeError) -> bool:
    # Unreachable, rate-limited, Stripe's own 5xx, or the same idempotency key still in
    # flight there (409): all worth asking again. A revoked key is ours to fix, and
    # failing customers' payments for it would be wrong: retried (and logged) too.
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.AuthenticationError):
        return True
    status = exc.http_status or 0
    return status >= 500 or status == 409


async def _once(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except stripe.StripeError as exc:
        if _transient(exc):
            raise TransientError(f"Stripe unavailable: {type(exc).__name__} {exc.http_status}") from exc
        error: Any = exc.error
        code = (getattr(error, "code", None) if error is not None else None) or exc.code
        raise StripeRefused(
            str(code or type(exc).__name__), exc.user_message or str(exc), exc.http_status
        ) from exc


async def calling_stripe(call: Callable[[], Awaitable[T]], *, attempts: int = 3) -> T:
    """One Stripe request, asked again on a blip; TransientError when Stripe stays away,
    StripeRefused when it says no."""
    return await tried_a_few_times(functools.partial(_once, call), attempts=attempts)


def search_literal(value: str) -> str:
    """A value quoted for Stripe's search query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class AccountCustomers:
    """The Stripe Customer of each ERP account of one merchant, found or created once.

    Found by search on our metadata first (the customer survives our restarts and
    Stripe's 24-hour idempotency window); created with an idempotency key derived from
    the merchant and the account, so two services or processes that miss it at once in
    that window still make one. Remembered per process: an account's customer never changes.
    """

    def __init__(self, client: stripe.StripeClient, merchant: str) -> None:
        self._client = client
        self._merchant = merchant
        self._known: dict[str, str] = {}

    async def customer_of(self, account_id: str) -> str:
        known = self._known.get(account_id)
        if known is not None:
            return known
        query = (
            f"metadata['account_id']:{search_literal(account_id)}"
            f" AND metadata['merchant']:{search_literal(self._merchant)}"
        )
        found = await calling_stripe(
            lambda: self._client.v1.customers.search_async(params={"query": query, "limit": 1})
        )
        customer_id = found.data[0].id if found.data else await self.create(account_id)
        self._known[account_id] = customer_id
        return customer_id

    async def create(self, account_id: str) -> str:
        created = await calling_stripe(
            lambda: self._client.v1.customers.create_async(
                params={
                    "name": account_id,
                    "description": f"ERP account {account_id}",
                    "metadata": {"account_id": account_id, "merchant": self._merchant},
                },
                options={"idempotency_key": f"customer-{self._merchant}-{account_id}"},
            )
        )
        return str(created.id)
