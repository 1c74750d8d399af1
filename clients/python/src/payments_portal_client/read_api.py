"""The read-model API (status-projector) as a portal backend calls it, with its API key."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from .read_model import AccountSummary, InvoiceOut, InvoicePage, PayStatus


class NotFound(LookupError):
    """Unknown account or invoice, or one another merchant's key may not see (the same answer)."""


class ReadModelUnavailable(Exception):
    """503: the read model's database did not answer in time, or (`behind`) it has not yet
    applied the `min_offsets` passed. Retry after `retry_after_s` seconds."""

    def __init__(self, detail: str, *, retry_after_s: int, behind: bool) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.behind = behind


Params = dict[str, str | int | list[str]]


def _offsets(min_offsets: dict[tuple[str, int], int] | None) -> list[str]:
    return [f"{topic}:{partition}:{offset}" for (topic, partition), offset in (min_offsets or {}).items()]


class ReadModelClient:
    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 5.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
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
        response = await self._http.get(path, params=params)
        if response.status_code == 404:
            raise NotFound(path)
        if response.status_code == 503:
            problem = response.json()
            raise ReadModelUnavailable(
                problem.get("detail", "read model unavailable"),
                retry_after_s=int(response.headers.get("retry-after", "1")),
                behind=problem.get("type", "").endswith(":behind"),
            )
        response.raise_for_status()
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
