"""The provider port over HTTP (the sandbox provider's API, batched).

Quick blips (a dropped connection, one 503) are retried here (`tried_a_few_times`); when the
provider stays away a `ProviderUnavailable` (a TransientError) tells the worker to
reschedule the calls with backoff.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic_core import to_json

from invoice_sync.domain.registration import (
    Accepted,
    Outcome,
    Refused,
    RegistrationRequest,
    WithdrawalRequest,
)
from payments_platform import tracing
from payments_platform.messaging import TransientError, tried_a_few_times

log = logging.getLogger(__name__)

_TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_JSON = {"content-type": "application/json"}


class ProviderUnavailable(TransientError):
    """The provider did not answer, or answered that it cannot now."""


class HttpProvider:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        batch_size: int = 500,
        quick_attempts: int = 3,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        )
        if tracing.ENABLED:
            # A client span per registration call (httpx's maintained instrumentation, on
            # this client only), carrying the trace to the provider in `traceparent`.
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(self._client)
        self._batch_size = batch_size
        self._quick_attempts = quick_attempts

    async def aclose(self) -> None:
        await self._client.aclose()

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        items = [
            {
                "account_id": r.account_id,
                "invoice_number": r.invoice_number,
                "amount_minor": r.amount_minor,
                "currency": r.currency,
            }
            for r in requests
        ]
        return await self._in_batches("/v1/invoices/batch", items)

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]:
        items = [{"account_id": r.account_id, "invoice_number": r.invoice_number} for r in requests]
        outcomes = await self._in_batches("/v1/invoices/withdrawals", items)
        # The provider never knew it (or forgot it): nothing is registered, which is the goal.
        return [
            Accepted("") if isinstance(o, Refused) and o.code == "unknown_invoice" else o for o in outcomes
        ]

    async def _in_batches(self, path: str, items: list[dict[str, Any]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(items), self._batch_size):
            chunk = items[start : start + self._batch_size]
            outcomes += await tried_a_few_times(
                functools.partial(self._call, path, chunk),
                attempts=self._quick_attempts,
                on=ProviderUnavailable,
            )
        return outcomes

    async def _call(self, path: str, chunk: list[dict[str, Any]]) -> list[Outcome]:
        try:
            # pydantic_core's encoder, not httpx's json= (the standard library's): a batch
            # of 500 invoices costs a few times less to write.
            response = await self._client.post(path, content=to_json({"invoices": chunk}), headers=_JSON)
        except httpx.HTTPError as exc:  # connect, read timeout, protocol errors
            raise ProviderUnavailable(f"provider unreachable: {exc!r}") from exc
        if response.status_code in _TRANSIENT_STATUSES:
            raise ProviderUnavailable(f"provider answered {response.status_code}")
        body = _json(response)
        if response.is_success:
            results = body.get("results")
            if not isinstance(results, list) or len(results) != len(chunk):
                raise ProviderUnavailable("provider answered a malformed batch result")
            return [_outcome(r) for r in results]
        # Any other 4xx is the provider refusing the whole request, for good.
        code, message = _error(body, f"http_{response.status_code}")
        log.warning("provider refused a batch", extra={"status": response.status_code, "code": code})
        return [Refused(code, message)] * len(chunk)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(body: dict[str, Any], default: str) -> tuple[str, str]:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("code") or default), str(error.get("message") or "")
    return default, str(body.get("detail") or "")


def _outcome(result: Any) -> Outcome:
    if isinstance(result, dict) and result.get("status") == "refused":
        code, message = _error(result, "refused")
        return Refused(code, message)
    if isinstance(result, dict) and result.get("provider_invoice_id") is not None:
        return Accepted(str(result["provider_invoice_id"]))
    raise ProviderUnavailable(f"provider answered an unreadable result: {result!r}")
