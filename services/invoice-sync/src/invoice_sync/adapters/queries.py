"""Read-only views for operators: the mirror of an account, the registration backlog,
refusals and retrying calls."""

from __future__ import annotations

from typing import Any

import asyncpg


async def account_invoices(pool: asyncpg.Pool, account_id: str) -> list[dict[str, Any]]:
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


async def registration_backlog(pool: asyncpg.Pool) -> dict[str, Any]:
    row = await pool.fetchrow(
        """
        SELECT count(*) AS pending,
               count(*) FILTER (WHERE attempts > 0) AS retrying,
               min(next_attempt_at) AS next_due
        FROM registrations
        """
    )
    return dict(row) if row else {}


async def refused(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Invoices the provider refused for good (at their current ERP version)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """
        SELECT account_id, invoice_number, erp_version, refusal, refused_version, updated_at
          FROM invoices WHERE refused_version IS NOT NULL
         ORDER BY updated_at
        """
    )
    return rows


async def retrying(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Provider calls that failed for a passing reason (outage, timeout) and wait to retry."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """
        SELECT account_id, invoice_number, action, erp_version, attempts, next_attempt_at, last_error
          FROM registrations WHERE last_error IS NOT NULL
         ORDER BY next_attempt_at
        """
    )
    return rows
