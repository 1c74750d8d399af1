"""Reading payments with their allocations (one row per payment)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from payment_intake.domain.payment import Payment, PaymentStatus


def sql_in(statuses: frozenset[PaymentStatus]) -> str:
    """The statuses as an SQL list: every query selects by the domain's sets, never a copy."""
    return ", ".join(f"'{status.value}'" for status in sorted(statuses))


async def update_payment(
    conn: asyncpg.Connection, payment_id: UUID, assignments: str, value: object, where: str = "true"
) -> None:
    """One payment's columns set (`assignments` with $2 for `value`), if `where` holds."""
    await conn.execute(
        f"UPDATE payments SET {assignments} WHERE payment_id = $1 AND {where}", payment_id, value
    )


async def read_payments(conn: asyncpg.Connection, payment_ids: Sequence[UUID]) -> list[Payment]:
    return [payment_of(r) for r in await conn.fetch(_READ, list(payment_ids))]


async def lock_payments(conn: asyncpg.Connection, payment_ids: Sequence[UUID]) -> list[Payment]:
    """Locked and read in one round trip."""
    return [payment_of(r) for r in await conn.fetch(_LOCKED, list(payment_ids))]


def payment_of(row: asyncpg.Record) -> Payment:
    return Payment(
        payment_id=row["payment_id"],
        account_id=row["account_id"],
        idempotency_key=row["idempotency_key"],
        status=PaymentStatus(row["status"]),
        currency=row["currency"],
        total_minor=row["total_minor"],
        method=row["method"],
        scope=row["scope"],
        command_event_id=row["command_event_id"],
        correlation_id=row["correlation_id"],
        checkout_id=row["checkout_id"],
        expires_at=row["expires_at"],
        open_attempts=row["open_attempts"],
        allocations=tuple(zip(row["numbers"], row["amounts"], strict=True)),
        confirmed_minor=row["confirmed_minor"],
        confirmed_currency=row["confirmed_currency"],
        provider_payment_ref=row["provider_payment_ref"],
        flag_reason=row["flag_reason"],
        updated_at=row["updated_at"],
    )


_WITH_ALLOCATIONS = """
SELECT p.*, array_agg(a.invoice_number ORDER BY a.invoice_number) AS numbers,
       array_agg(a.amount_minor ORDER BY a.invoice_number) AS amounts
  FROM {ids} JOIN payments p USING (payment_id)
  JOIN payment_allocations a USING (payment_id)
 GROUP BY p.payment_id
"""
# The payment's columns come from the locking scan itself. Read through a join after it,
# they would come from the statement's snapshot, taken before the lock was waited for:
# the checkout opener then saw `requested` for a payment a webhook had just made
# `succeeded`, moved it back to `checkout_open`, and status sync announced the success a
# second time (make chaos; tests/integration/test_payment_locks.py).
_LOCKED = """
WITH locked AS (
    SELECT * FROM payments WHERE payment_id = ANY ($1::uuid[])
     ORDER BY payment_id FOR UPDATE)
SELECT l.*, a.numbers, a.amounts
  FROM locked l
  JOIN (SELECT payment_id, array_agg(invoice_number ORDER BY invoice_number) AS numbers,
               array_agg(amount_minor ORDER BY invoice_number) AS amounts
          FROM payment_allocations WHERE payment_id = ANY ($1::uuid[])
         GROUP BY payment_id) a USING (payment_id)
"""
_READ = _WITH_ALLOCATIONS.format(ids="unnest($1::uuid[]) AS ids (payment_id)")
