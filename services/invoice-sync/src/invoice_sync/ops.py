"""Operator actions behind `invoice-sync-ops`: registrations that failed or are retrying,
and asking for them again. The CLI only draws; tests call these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import asyncpg

from invoice_sync.adapters import queries
from invoice_sync.domain.model import InvoiceKey
from invoice_sync.domain.registration import forget_refusal, intent_for
from invoice_sync.unit_of_work import UnitOfWork

UnitsOfWork = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


async def failed(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Invoices the provider refused for good (at their current ERP version)."""
    return await queries.refused(pool)


async def retrying(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Provider calls that failed for a passing reason (outage, timeout) and wait to retry."""
    return await queries.retrying(pool)


async def retry(
    units: UnitsOfWork, keys: Sequence[InvoiceKey], *, progress: Callable[[int, int], None] | None = None
) -> int:
    """Ask the provider again now: a retrying call becomes due at once; a refused invoice
    forgets its refusal and is registered again (the provider may have been fixed).
    Returns how many calls were scheduled."""
    scheduled = 0
    for done, key in enumerate(keys, start=1):
        async with units() as uow:
            if await uow.registrations.due_now(key):
                scheduled += 1
            else:
                invoice = await uow.invoices.get(*key)
                forgiven = forget_refusal(invoice.payable) if invoice is not None else None
                if forgiven is not None:
                    uow.invoices.put_provider_states([forgiven])
                    intent = intent_for(forgiven)
                    if intent is not None:
                        uow.registrations.schedule(forgiven, intent)
                        scheduled += 1
            await uow.commit()
        if progress is not None:
            progress(done, len(keys))
    return scheduled
