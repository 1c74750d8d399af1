"""The PostgreSQL repository of refunds: one per payment, claimed by the provider worker."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from payment_intake.adapters.queued_work import QueuedWork
from payment_intake.domain.refunds import Refund

_SELECT = """
SELECT r.*, p.checkout_id FROM refunds r JOIN payments p USING (payment_id)
"""


def _refund(row: asyncpg.Record) -> Refund:
    return Refund(
        refund_id=row["refund_id"],
        payment_id=row["payment_id"],
        account_id=row["account_id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        reason_code=row["reason_code"],
        requested_by=row["requested_by"],
        status=row["status"],
        provider_refund_id=row["provider_refund_id"],
        attempts=row["attempts"],
        checkout_id=row["checkout_id"],
        updated_at=row["updated_at"],
    )


class PostgresRefundRepository:
    def __init__(self, conn: asyncpg.Connection, queued: QueuedWork | None = None) -> None:
        self._conn = conn
        self._queued = queued

    def _provider_called_for(self) -> None:
        """The provider worker has a refund to submit once this commits."""
        if self._queued is not None:
            self._queued.provider_calls = True

    async def request(
        self,
        *,
        refund_id: UUID,
        payment_id: UUID,
        account_id: str,
        amount_minor: int,
        currency: str,
        reason_code: str,
        requested_by: str,
    ) -> bool:
        """Store a refund to make; False when the payment already has one."""
        self._provider_called_for()
        return bool(
            await self._conn.fetchval(
                """
                INSERT INTO refunds (refund_id, payment_id, account_id, amount_minor, currency,
                                     reason_code, requested_by, status, next_attempt_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', now())
                ON CONFLICT (payment_id) DO NOTHING RETURNING true
                """,
                refund_id,
                payment_id,
                account_id,
                amount_minor,
                currency,
                reason_code,
                requested_by,
            )
        )

    async def reopen_failed(self, payment_id: UUID, refund_id: UUID, requested_by: str) -> bool:
        """Ask again for a refund that failed, under a new id (a provider refuses a reused one)."""
        self._provider_called_for()
        return bool(
            await self._conn.fetchval(
                """
                UPDATE refunds SET refund_id = $2, requested_by = $3, status = 'requested',
                       provider_refund_id = NULL, attempts = 0, next_attempt_at = now(),
                       updated_at = now()
                 WHERE payment_id = $1 AND status = 'failed' RETURNING true
                """,
                payment_id,
                refund_id,
                requested_by,
            )
        )

    async def get_for_update(self, refund_id: UUID) -> Refund | None:
        await self._conn.execute("SELECT 1 FROM refunds WHERE refund_id = $1 FOR UPDATE", refund_id)
        row = await self._conn.fetchrow(_SELECT + " WHERE r.refund_id = $1", refund_id)
        return None if row is None else _refund(row)

    async def claim(self, *, batch_size: int, lease_s: float) -> list[Refund]:
        """Refunds to submit, and submitted ones whose webhook is overdue (to ask about);
        each comes back after `lease_s` if this process dies with it."""
        rows = await self._conn.fetch(
            """
            WITH due AS (
                SELECT refund_id FROM refunds
                 WHERE status IN ('requested', 'submitted') AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            UPDATE refunds r SET next_attempt_at = now() + make_interval(secs => $2),
                   attempts = r.attempts + 1
              FROM due WHERE r.refund_id = due.refund_id
            RETURNING r.refund_id
            """,
            batch_size,
            lease_s,
        )
        if not rows:
            return []
        found = await self._conn.fetch(
            _SELECT + " WHERE r.refund_id = ANY ($1::uuid[])", [r["refund_id"] for r in rows]
        )
        return [_refund(r) for r in found]

    async def submitted(self, refund_id: UUID, provider_refund_id: str, *, query_after_s: float) -> None:
        await self._conn.execute(
            """
            UPDATE refunds SET status = 'submitted', provider_refund_id = $2, updated_at = now(),
                   next_attempt_at = now() + make_interval(secs => $3)
             WHERE refund_id = $1 AND status = 'requested'
            """,
            refund_id,
            provider_refund_id,
            query_after_s,
        )

    async def retry_later(self, refund_id: UUID, delay_s: float, error: str) -> None:
        await self._conn.execute(
            "UPDATE refunds SET next_attempt_at = now() + make_interval(secs => $2), failure = $3"
            " WHERE refund_id = $1 AND status IN ('requested', 'submitted')",
            refund_id,
            delay_s,
            error[:500],
        )

    async def settle(self, refund_id: UUID, status: str, *, failure: str | None = None) -> None:
        await self._conn.execute(
            """
            UPDATE refunds SET status = $2, failure = COALESCE($3, failure), updated_at = now(),
                   next_attempt_at = NULL
             WHERE refund_id = $1
            """,
            refund_id,
            status,
            failure,
        )
