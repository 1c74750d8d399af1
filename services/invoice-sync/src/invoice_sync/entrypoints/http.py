"""invoice-sync's own routes (health and metrics come from ServiceHost): a read-only
view of the mirror, for operators."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI

from invoice_sync.adapters import queries


def build_app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI(title="invoice-sync", version="1.0.0")

    @app.get("/accounts/{account_id}/invoices")
    async def account_invoices(account_id: str) -> list[dict[str, Any]]:
        return await queries.account_invoices(pool, account_id)

    @app.get("/registrations/backlog")
    async def backlog() -> dict[str, Any]:
        return await queries.registration_backlog(pool)

    return app
