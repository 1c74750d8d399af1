"""invoice-sync's own routes (health and metrics come from ServiceHost): a read-only
view of the mirror, for operators."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI


def build_app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI(title="invoice-sync", version="1.0.0")

    @app.get("/accounts/{account_id}/invoices")
    async def account_invoices(account_id: str) -> list[dict[str, Any]]:
        rows = await pool.fetch(
            """
            SELECT i.invoice_number, i.erp_version, i.erp_status, i.currency, i.total_minor,
                   i.open_minor, i.registered_amount_minor, i.provider_invoice_id, i.refusal,
                   r.action AS pending_action, r.attempts AS pending_attempts,
                   r.last_error AS pending_error
            FROM invoices i
            LEFT JOIN registrations r USING (account_id, invoice_number)
            WHERE i.account_id = $1
            ORDER BY i.invoice_number
            """,
            account_id,
        )
        return [dict(r) for r in rows]

    @app.get("/registrations/backlog")
    async def backlog() -> dict[str, Any]:
        row = await pool.fetchrow(
            """
            SELECT count(*) AS pending,
                   count(*) FILTER (WHERE attempts > 0) AS retrying,
                   min(next_attempt_at) AS next_due
            FROM registrations
            """
        )
        return dict(row) if row else {}

    return app
