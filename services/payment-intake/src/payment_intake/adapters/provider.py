"""The provider port's HTTP adapter: open hosted checkout and payer-portal sessions.

Quick blips (a 5xx, a timeout, a reset connection) are retried here a few times with
tenacity; what outlasts that is a TransientError the worker reschedules with
backoff. A 4xx is the provider refusing: permanent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from payment_intake.adapters.postgres import Payment
from payments_shared.messaging import TransientError


@dataclass(frozen=True)
class OpenedCheckout:
    checkout_id: str
    url: str
    expires_at: datetime


class ProviderRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProviderClient:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._attempts = attempts

    async def open_checkout(self, payment: Payment) -> OpenedCheckout:
        """Idempotent at the provider by payment id: a retry gets the same checkout."""
        body = {
            "payment_id": str(payment.payment_id),
            "account_id": payment.account_id,
            "amount_minor": payment.total_minor,
            "currency": payment.currency,
            "method": payment.method,
            "invoices": [{"invoice_number": n, "amount_minor": a} for n, a in payment.allocations],
        }
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential_jitter(multiplier=0.05, max=0.5),
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        ):
            with attempt:
                data = await self._post("/v1/checkout-sessions", body)
        return OpenedCheckout(
            checkout_id=data["checkout_id"],
            url=data["url"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )

    async def _post(self, path: str, body: dict[str, object]) -> dict[str, str]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise TransientError(f"provider unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"provider answered {response.status_code}")
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise ProviderRefused(
                str(error.get("code", f"http_{response.status_code}")),
                str(error.get("message", response.text[:200])),
            )
        data: dict[str, str] = response.json()
        return data

    async def close(self) -> None:
        await self._client.aclose()
