"""The sandbox provider's connector (the provider port over its HTTP API): open hosted
checkout and payer-portal sessions, status sync, cancel, refunds.

Quick blips (a 5xx, a timeout, a reset connection) are retried here a few times, with
exponential backoff and jitter (`tried_a_few_times`, shared with invoice-sync); what
outlasts that is a TransientError the worker reschedules with backoff. A 4xx is the
provider refusing: permanent.

aiohttp rather than httpx: one checkout costs about a quarter of the CPU (httpx's
connection pool and anyio layers were most of the service's CPU under load), and the
checkout opener shares its process with the pay-command consumer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp

from payment_intake.domain.payment import Payment
from payment_intake.domain.provider import (
    CheckoutState,
    ClaimedCheckout,
    OpenedCheckout,
    ProviderRefused,
    RefundState,
)
from payment_intake.domain.refunds import Refund
from payments_platform import tracing
from payments_platform.messaging import TransientError, tried_a_few_times


class ProviderClient:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._attempts = attempts

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                json_serialize=json.dumps,
                trace_configs=_traced(),
            )
        return self._session

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
        data = await self._retrying(lambda: self._post("/v1/checkout-sessions", body))
        return OpenedCheckout(
            checkout_id=data["checkout_id"],
            url=data["url"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )

    async def checkout_state(self, checkout: ClaimedCheckout) -> CheckoutState:
        """Status sync; ProviderRefused `unknown_checkout` when the provider does not know it."""
        return CheckoutState.of(await self._call("GET", f"/v1/checkouts/{checkout.checkout_id}"))

    async def cancel_checkout(self, checkout: ClaimedCheckout) -> CheckoutState:
        """Idempotent; ProviderRefused `checkout_completed` (with the checkout) if money moved."""
        return CheckoutState.of(await self._call("POST", f"/v1/checkouts/{checkout.checkout_id}/cancel", {}))

    async def refund(self, refund: Refund) -> RefundState:
        """Idempotent at the provider by our refund id: a retry is the same refund."""
        if refund.checkout_id is None:
            raise ProviderRefused("no_checkout", "the payment has no checkout at the provider")
        body = {
            "refund_id": str(refund.refund_id),
            "checkout_id": refund.checkout_id,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "reason": refund.reason_code,
        }
        return _refund_state(await self._call("POST", "/v1/refunds", body))

    async def refund_state(self, refund: Refund) -> RefundState:
        return _refund_state(await self._call("GET", f"/v1/refunds/{refund.refund_id}"))

    async def _call(self, method: str, path: str, body: dict[str, object] | None = None) -> dict[str, Any]:
        return await self._retrying(lambda: self._post(path, body, method=method))

    async def _retrying(self, call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        return await tried_a_few_times(call, attempts=self._attempts)

    async def _post(
        self, path: str, body: dict[str, object] | None, *, method: str = "POST"
    ) -> dict[str, Any]:
        try:
            async with self._client().request(method, self._base_url + path, json=body) as response:
                status, text = response.status, await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"provider unreachable: {exc!r}") from exc
        if status >= 500 or status == 429:
            raise TransientError(f"provider answered {status}")
        if status >= 400:
            try:
                answer = json.loads(text)
                error = answer.get("error", {})
            except (ValueError, AttributeError):
                answer, error = {}, {}
            raise ProviderRefused(
                str(error.get("code", f"http_{status}")),
                str(error.get("message", text[:200])),
                answer if isinstance(answer, dict) else {},
            )
        data: dict[str, Any] = json.loads(text)
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _traced() -> list[aiohttp.TraceConfig] | None:
    """A client span per provider call (the maintained aiohttp instrumentation, on this
    session only), carrying the trace to the provider in `traceparent`."""
    if not tracing.ENABLED:
        return None
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config()]


def _refund_state(data: dict[str, Any]) -> RefundState:
    return RefundState(
        refund_id=str(data["refund_id"]),
        provider_refund_id=data.get("provider_refund_id"),
        status=str(data["status"]),
        reason=data.get("reason"),
    )
