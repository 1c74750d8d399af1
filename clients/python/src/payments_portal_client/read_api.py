"""The read-model API (status-projector) as a portal backend calls it, with its API key."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx
from opentelemetry import propagate

from .read_model import AccountSummary, InvoiceOut, InvoicePage, PayStatus


class NotFound(LookupError):
    """Unknown account or invoice, or one another merchant's key may not see (the same answer)."""


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

    async def _get(self, path: str, params: dict[str, str | int | list[str]] | None = None) -> bytes:
        # The caller's trace context goes along: the read API's request span joins its trace.
        headers: dict[str, str] = {}
        propagate.inject(headers)
        response = await self._http.get(path, params=params, headers=headers)
        if response.status_code == 404:
            raise NotFound(path)
        response.raise_for_status()
        return response.content

    async def invoice_page(
        self,
        account_id: str,
        *,
        statuses: list[PayStatus] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> InvoicePage:
        params: dict[str, str | int | list[str]] = {"limit": limit}
        if statuses:
            params["pay_status"] = [s.value for s in statuses]
        if cursor:
            params["cursor"] = cursor
        return InvoicePage.model_validate_json(await self._get(f"/v1/accounts/{account_id}/invoices", params))

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

    async def invoice(self, account_id: str, invoice_number: str) -> InvoiceOut:
        return InvoiceOut.model_validate_json(
            await self._get(f"/v1/accounts/{account_id}/invoices/{invoice_number}")
        )

    async def summary(self, account_id: str) -> AccountSummary:
        return AccountSummary.model_validate_json(await self._get(f"/v1/accounts/{account_id}/summary"))
