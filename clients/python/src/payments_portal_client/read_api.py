"""The read-model API (status-projector) as a portal backend calls it, with its API key.

Every answer that is not a 2xx raises a `ReadModelError` (with the status and the
problem body): `NotFound`, `Unauthorized` and `Unavailable` for the ones a portal acts
on, the base class for the rest (422: bad parameters)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
from opentelemetry import propagate

from .read_model import AccountSummary, InvoiceOut, InvoicePage, PayStatus


class ReadModelError(Exception):
    """The read API did not answer 2xx: `status` and the `problem` body it sent (JSON, or
    the text when it was not JSON)."""

    def __init__(self, path: str, status: int, problem: Any) -> None:
        super().__init__(f"{path}: {status} {problem}")
        self.path = path
        self.status = status
        self.problem = problem


class NotFound(ReadModelError, LookupError):
    """404: unknown account or invoice, or one another merchant's key may not see (the
    same answer)."""


class Unauthorized(ReadModelError):
    """401/403: no valid merchant API key (wrong, revoked, or sent to another deployment)."""


class Unavailable(ReadModelError):
    """503: the read API cannot answer now (no database answered in time), or `behind`:
    none has applied the `min_offsets` passed yet (a replica catching up with the
    caller's own write). Try again after `retry_after_s` (None when the answer did not
    say)."""

    def __init__(self, path: str, status: int, problem: Any, retry_after_s: float | None) -> None:
        super().__init__(path, status, problem)
        self.retry_after_s = retry_after_s
        kind = problem.get("type", "") if isinstance(problem, dict) else ""
        self.behind = str(kind).endswith(":behind")


def _retry_after_s(header: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not header:
        return None
    if header.strip().isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _problem(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not JSON (a proxy's page), or not UTF-8
        return response.text


def _raise_for_answer(path: str, response: httpx.Response) -> None:
    """The typed error for an answer that is not a 2xx."""
    if response.is_success:
        return
    status, problem = response.status_code, _problem(response)
    if status == 404:
        raise NotFound(path, status, problem)
    if status in (401, 403):
        raise Unauthorized(path, status, problem)
    if status == 503:
        raise Unavailable(path, status, problem, _retry_after_s(response.headers.get("retry-after")))
    raise ReadModelError(path, status, problem)


Params = dict[str, str | int | list[str]]


def _offsets(min_offsets: dict[tuple[str, int], int] | None) -> list[str]:
    return [f"{topic}:{partition}:{offset}" for (topic, partition), offset in (min_offsets or {}).items()]


class ReadModelClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(
        self, path: str, params: Params | None = None, min_offsets: dict[tuple[str, int], int] | None = None
    ) -> bytes:
        params = dict(params or {})
        if min_offsets:
            params["min_offset"] = _offsets(min_offsets)
        # The caller's trace context goes along: the read API's request span joins its trace.
        headers: dict[str, str] = {}
        propagate.inject(headers)
        response = await self._http.get(path, params=params, headers=headers)
        _raise_for_answer(path, response)
        return response.content

    async def invoice_page(
        self,
        account_id: str,
        *,
        statuses: list[PayStatus] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        min_offsets: dict[tuple[str, int], int] | None = None,
    ) -> InvoicePage:
        """`min_offsets` ({(topic, partition): next offset}, e.g. a response's freshness or
        the position after the caller's own message): an answer reflecting at least those."""
        params: Params = {"limit": limit}
        if statuses:
            params["pay_status"] = [s.value for s in statuses]
        if cursor:
            params["cursor"] = cursor
        return InvoicePage.model_validate_json(
            await self._get(f"/v1/accounts/{account_id}/invoices", params, min_offsets)
        )

    async def invoices(self, account_id: str, *, statuses: list[PayStatus] | None = None) -> list[InvoiceOut]:
        """Every invoice of the account (all pages)."""
        items: list[InvoiceOut] = []
        cursor: str | None = None
        while True:
            page = await self.invoice_page(account_id, statuses=statuses, cursor=cursor, limit=500)
            items.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return items

    async def invoice(
        self, account_id: str, invoice_number: str, *, min_offsets: dict[tuple[str, int], int] | None = None
    ) -> InvoiceOut:
        return InvoiceOut.model_validate_json(
            await self._get(f"/v1/accounts/{account_id}/invoices/{invoice_number}", None, min_offsets)
        )

    async def summary(
        self, account_id: str, *, min_offsets: dict[tuple[str, int], int] | None = None
    ) -> AccountSummary:
        return AccountSummary.model_validate_json(
            await self._get(f"/v1/accounts/{account_id}/summary", None, min_offsets)
        )
