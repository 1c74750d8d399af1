"""Operator actions behind `invoice-sync-ops`: registrations that failed or are retrying,
and asking for them again. The CLI only draws; tests call these."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from invoice_sync.adapters.postgres import InvoiceRepository, RegistrationQueue, save_provider_states
from invoice_sync.domain.registration import intent_for

InvoiceKey = tuple[str, str]
CONSUMER = "erp-invoices"


async def failed(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Invoices the provider refused for good (at their current ERP version)."""
    return await pool.fetch(
        """
        SELECT account_id, invoice_number, erp_version, refusal, refused_version, updated_at
          FROM invoices WHERE refused_version IS NOT NULL
         ORDER BY updated_at
        """
    )


async def retrying(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Provider calls that failed for a passing reason (outage, timeout) and wait to retry."""
    return await pool.fetch(
        """
        SELECT account_id, invoice_number, action, erp_version, attempts, next_attempt_at, last_error
          FROM registrations WHERE last_error IS NOT NULL
         ORDER BY next_attempt_at
        """
    )


async def retry(
    pool: asyncpg.Pool, keys: Sequence[InvoiceKey], *, progress: Callable[[int, int], None] | None = None
) -> int:
    """Ask the provider again now: a retrying call becomes due at once; a refused invoice
    forgets its refusal and is registered again (the provider may have been fixed).
    Returns how many calls were scheduled."""
    scheduled = 0
    for done, (account_id, invoice_number) in enumerate(keys, start=1):
        async with pool.acquire() as conn, conn.transaction():
            due = await conn.fetchval(
                "UPDATE registrations SET next_attempt_at = now(), attempts = 0"
                " WHERE account_id = $1 AND invoice_number = $2 RETURNING true",
                account_id,
                invoice_number,
            )
            if due:
                scheduled += 1
            else:
                invoice = await InvoiceRepository(conn).get(account_id, invoice_number)
                if invoice is not None and invoice.provider.refused_version is not None:
                    invoice.provider.refusal = invoice.provider.refused_version = None
                    await save_provider_states(conn, [invoice])
                    intent = intent_for(invoice)
                    if intent is not None:
                        await RegistrationQueue(conn).schedule([(invoice, intent)])
                        scheduled += 1
        if progress is not None:
            progress(done, len(keys))
    return scheduled
