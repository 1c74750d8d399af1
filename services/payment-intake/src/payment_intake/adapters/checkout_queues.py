"""The checkout work queues over `payments` (checkouts to open, to expire, to ask the
provider about, to cancel at the provider): each claim leases what it returns, so a
crashed process's claims come back when the lease runs out."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from payment_intake.adapters.payment_rows import lock_payments, read_payments, sql_in, update_payment
from payment_intake.adapters.queued_work import QueuedWork
from payment_intake.domain.payment import AWAITING_PROVIDER, EXPIRABLE, Payment, PaymentStatus
from payment_intake.domain.provider import ClaimedCheckout


class PostgresCheckoutQueues:
    def __init__(self, conn: asyncpg.Connection, queued: QueuedWork | None = None) -> None:
        self._conn = conn
        self._queued = queued

    async def claim_to_open(self, *, batch_size: int, lease_s: float) -> list[Payment]:
        ids = await self._conn.fetch(_CLAIM_TO_OPEN, batch_size, lease_s)
        return await lock_payments(self._conn, [r["payment_id"] for r in ids]) if ids else []

    async def open_later(self, payment_id: UUID, delay_s: float) -> None:
        await update_payment(
            self._conn,
            payment_id,
            f"next_attempt_at = {_IN_SECONDS}",
            float(delay_s),
            f"status = '{PaymentStatus.REQUESTED.value}'",
        )

    async def expiring(self, *, batch_size: int) -> list[Payment]:
        due = await self._conn.fetch(
            f"""
            SELECT payment_id FROM payments
             WHERE status IN ({sql_in(EXPIRABLE)}) AND expires_at <= now()
             ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
            """,
            batch_size,
        )
        return await read_payments(self._conn, [r["payment_id"] for r in due]) if due else []

    async def claim_to_sync(
        self, *, batch_size: int, older_than_s: float, lease_s: float, payment_ids: Sequence[UUID] | None
    ) -> list[ClaimedCheckout]:
        rows = await self._conn.fetch(
            _CLAIM_TO_SYNC,
            batch_size,
            float(older_than_s),
            lease_s,
            None if payment_ids is None else list(payment_ids),
        )
        return [_claimed(r) for r in rows]

    async def sync_at(self, due: Sequence[tuple[UUID, float]]) -> None:
        await self._conn.executemany(
            "UPDATE payments SET sync_next_at = updated_at + make_interval(secs => $2), sync_attempts = 0"
            " WHERE payment_id = $1",
            [(payment_id, float(seconds)) for payment_id, seconds in due],
        )

    async def sync_later(self, payment_id: UUID, delay_s: float) -> None:
        await update_payment(self._conn, payment_id, f"sync_next_at = {_IN_SECONDS}", float(delay_s))

    async def cancel_at_provider(self, payment_id: UUID) -> None:
        if self._queued is not None:
            self._queued.provider_calls = True
        await self._conn.execute(
            "UPDATE payments SET cancel_state = 'due', cancel_next_at = now()"
            " WHERE payment_id = $1 AND cancel_state IS NULL",
            payment_id,
        )

    async def claim_to_cancel(self, *, batch_size: int, lease_s: float) -> list[ClaimedCheckout]:
        return [_claimed(r) for r in await self._conn.fetch(_CLAIM_TO_CANCEL, batch_size, lease_s)]

    async def cancel_done(self, payment_id: UUID, state: str) -> None:
        await update_payment(self._conn, payment_id, "cancel_state = $2, cancel_next_at = NULL", state)

    async def cancel_later(self, payment_id: UUID, delay_s: float) -> None:
        await update_payment(self._conn, payment_id, f"cancel_next_at = {_IN_SECONDS}", float(delay_s))


def _claimed(r: asyncpg.Record) -> ClaimedCheckout:
    return ClaimedCheckout(r["payment_id"], r["account_id"], r["checkout_id"], r["updated_at"], r["attempts"])


_IN_SECONDS = "now() + make_interval(secs => $2)"
_CLAIM_TO_OPEN = f"""
UPDATE payments SET next_attempt_at = now() + make_interval(secs => $2),
       open_attempts = open_attempts + 1
 WHERE payment_id IN (
    SELECT payment_id FROM payments
     WHERE next_attempt_at <= now() AND status = '{PaymentStatus.REQUESTED.value}'
     ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING payment_id
"""
# The least threshold of any policy selects candidates ($2); each payment's own policy
# decides (the provider worker).
_CLAIM_TO_SYNC = f"""
WITH due AS (
    SELECT payment_id FROM payments
     WHERE status IN ({sql_in(AWAITING_PROVIDER)}) AND checkout_id IS NOT NULL
       AND flag_reason IS NULL
       AND CASE WHEN $4::uuid[] IS NULL
                THEN updated_at <= now() - make_interval(secs => $2)
                     AND COALESCE(sync_next_at, '-infinity') <= now()
                ELSE payment_id = ANY ($4::uuid[]) END
     ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE payments p SET sync_next_at = now() + make_interval(secs => $3),
       sync_attempts = p.sync_attempts + 1
  FROM due WHERE p.payment_id = due.payment_id
RETURNING p.payment_id, p.account_id, p.checkout_id, p.updated_at, p.sync_attempts AS attempts
"""
_CLAIM_TO_CANCEL = """
WITH due AS (
    SELECT payment_id FROM payments
     WHERE cancel_state = 'due' AND cancel_next_at <= now() AND checkout_id IS NOT NULL
     ORDER BY cancel_next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE payments p SET cancel_next_at = now() + make_interval(secs => $2),
       cancel_attempts = p.cancel_attempts + 1
  FROM due WHERE p.payment_id = due.payment_id
RETURNING p.payment_id, p.account_id, p.checkout_id, p.updated_at, p.cancel_attempts AS attempts
"""
