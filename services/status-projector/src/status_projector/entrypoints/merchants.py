"""What the merchant file gives the read API, kept current while the service runs, and
`GET /v1/accounts/{account_id}/remittance`: the account's merchant's remittance details
(check, ACH, wire), readable before any pay command.

The file is looked at (mtime and size) at most once a second, on a request; when it
changed, the API keys, each merchant's accounts and remittance details are read again,
so adding an account to a merchant or rotating a key needs no restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response

from payments_contracts.remittance import AccountRemittance, RemittanceDetails
from payments_platform.merchants import MerchantFile, WatchedMerchantFile
from status_projector.domain.access import PortalKeys
from status_projector.entrypoints.http import NOT_FOUND, AccountId, Caller


@dataclass(frozen=True)
class MerchantView:
    keys: PortalKeys
    remittance: dict[str, RemittanceDetails]


def merchant_view(merchants: MerchantFile, keys: Callable[[MerchantFile], PortalKeys]) -> MerchantView:
    details = {m.name: m.remittance for m in merchants.merchants if m.remittance is not None}
    return MerchantView(keys(merchants), details)


def follow_merchant_file(
    app: FastAPI, path: Path, keys: Callable[[MerchantFile], PortalKeys]
) -> WatchedMerchantFile[MerchantView]:
    """Keep app.state's keys and remittance details as the file says now."""
    watch = WatchedMerchantFile(path, lambda merchants: merchant_view(merchants, keys))

    @app.middleware("http")
    async def current_merchants(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        view = watch.current()
        app.state.portal_keys = view.keys
        app.state.remittance = view.remittance
        return await call_next(request)

    return watch


def remittance_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["read model"])

    @router.get(
        "/accounts/{account_id}/remittance",
        response_model=AccountRemittance,
        responses=NOT_FOUND,
        summary="How the account pays offline: its merchant's check, ACH and wire details",
        description="The same details payment.remittance_instructions carries, from the merchant "
        "file, without sending a command. 404 for an account the key may not read, and for a "
        "merchant that configured no remittance details.",
    )
    async def remittance(request: Request, tenant: Caller, account_id: AccountId) -> AccountRemittance:
        details = getattr(request.app.state, "remittance", {}).get(tenant.merchant)
        if not tenant.can_read(account_id) or details is None:
            raise HTTPException(404, f"unknown account {account_id}")
        return AccountRemittance(account_id=account_id, reference=account_id, details=details)

    return router


def with_merchant_routes(app: FastAPI) -> FastAPI:
    app.include_router(remittance_router())
    return app
