"""The PostgreSQL repository of payments, their allocations and callback log, and the
workers' queues over them (claims with a lease: a crashed process's claims come back)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from payment_intake.domain.commands import Answered
from payment_intake.domain.payment import OPEN, NewPayment, Payment, PaymentStatus
from payment_intake.domain.provider import ClaimedCheckout


class PostgresPaymentRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def write_run(
        self, opened: Sequence[NewPayment], answered: Sequence[Answered], *, ttl_s: int
    ) -> bool:
        """Three statements; a unique index refusing a row undoes them all (a savepoint)."""
        allocations = [(p.payment_id, p.account_id, n, a) for p in opened for n, a in p.allocations]
        try:
            async with self._conn.transaction():
                if opened:
                    await self._conn.execute(
                        _INSERT_PAYMENTS,
                        *zip(*(_payment_row(p) for p in opened), strict=True),
                        float(ttl_s),
                    )
                    await self._conn.execute(_INSERT_ALLOCATIONS, *zip(*allocations, strict=True))
                if answered:
                    await self._conn.execute(
                        _INSERT_ANSWERS,
                        *zip(
                            *(
                                (
                                    a.account_id,
                                    a.key,
                                    a.stored.fingerprint,
                                    a.stored.outcome_type,
                                    json.dumps(a.stored.outcome),
                                )
                                for a in answered
                            ),
                            strict=True,
                        ),
                    )
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def get_for_update(self, payment_id: UUID) -> Payment | None:
        # Lock first, then read: the row read is the row this transaction will change.
        if (
            await self._conn.fetchval("SELECT 1 FROM payments WHERE payment_id = $1 FOR UPDATE", payment_id)
            is None
        ):
            return None
        found = await self._read([payment_id])
        return found[0] if found else None

    async def account_of(self, payment_id: UUID) -> str | None:
        account: str | None = await self._conn.fetchval(
            "SELECT account_id FROM payments WHERE payment_id = $1", payment_id
        )
        return account

    async def get_many_for_update(self, payment_ids: Sequence[UUID]) -> list[Payment]:
        """Several payments, locked, in one round trip (the checkout opener's rounds)."""
        return [_payment(r) for r in await self._conn.fetch(_LOCKED, list(payment_ids))]

    async def _read(self, payment_ids: Sequence[UUID]) -> list[Payment]:
        return [_payment(r) for r in await self._conn.fetch(_READ, list(payment_ids))]

    async def move(
        self,
        payment_id: UUID,
        to: PaymentStatus,
        *,
        reason: str | None = None,
        checkout_id: str | None = None,
        checkout_url: str | None = None,
        confirmed_minor: int | None = None,
        confirmed_currency: str | None = None,
        provider_payment_ref: str | None = None,
    ) -> None:
        """Record a transition the state machine decided; close allocations on an end state."""
        await self._conn.execute(
            """
            UPDATE payments SET status = $2, updated_at = now(),
                   end_reason = COALESCE($3, end_reason),
                   checkout_id = COALESCE(checkout_id, $4),
                   checkout_url = COALESCE($5, checkout_url),
                   confirmed_minor = COALESCE($6, confirmed_minor),
                   confirmed_currency = COALESCE($7, confirmed_currency),
                   provider_payment_ref = COALESCE($8, provider_payment_ref),
                   next_attempt_at = CASE WHEN $2 = 'requested' THEN next_attempt_at END
             WHERE payment_id = $1
            """,
            payment_id,
            to.value,
            reason,
            checkout_id,
            checkout_url,
            confirmed_minor,
            confirmed_currency,
            provider_payment_ref,
        )
        if to not in OPEN:
            await self._conn.execute(
                "UPDATE payment_allocations SET is_open = false, succeeded = $2 WHERE payment_id = $1",
                payment_id,
                to is PaymentStatus.SUCCEEDED,
            )

    async def note_confirmation(
        self,
        payment_id: UUID,
        *,
        confirmed_minor: int | None,
        confirmed_currency: str | None,
        provider_payment_ref: str | None,
    ) -> None:
        await self._conn.execute(
            """
            UPDATE payments SET confirmed_minor = $2, confirmed_currency = $3,
                   provider_payment_ref = COALESCE($4, provider_payment_ref), updated_at = now()
             WHERE payment_id = $1
            """,
            payment_id,
            confirmed_minor,
            confirmed_currency,
            provider_payment_ref,
        )

    async def keep_checkout_id(self, payment_id: UUID, checkout_id: str) -> None:
        await self._set(payment_id, "checkout_id = COALESCE(checkout_id, $2)", checkout_id)

    async def flag(self, payment_id: UUID, reason: str) -> None:
        await self._set(payment_id, "flag_reason = $2", reason)

    async def invoices_paid_by_others(self, payment: Payment) -> bool:
        return bool(
            await self._conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM payment_allocations WHERE succeeded AND account_id = $1"
                " AND invoice_number = ANY ($2::text[]) AND payment_id <> $3)",
                payment.account_id,
                [n for n, _ in payment.allocations],
                payment.payment_id,
            )
        )

    async def log_callback(
        self, payment_id: UUID | None, webhook_id: str, provider_event: str, verdict: str, note: str
    ) -> None:
        await self._conn.execute(
            "INSERT INTO callback_log (payment_id, webhook_id, provider_event, verdict, note)"
            " VALUES ($1, $2, $3, $4, $5)",
            payment_id,
            webhook_id,
            provider_event,
            verdict,
            note,
        )

    # --- the workers' queues ---------------------------------------------------------------

    async def claim_to_open(self, *, batch_size: int, lease_s: float) -> list[Payment]:
        ids = await self._conn.fetch(_CLAIM_TO_OPEN, batch_size, lease_s)
        return await self.get_many_for_update([r["payment_id"] for r in ids]) if ids else []

    async def open_later(self, payment_id: UUID, delay_s: float) -> None:
        await self._set(
            payment_id,
            "next_attempt_at = now() + make_interval(secs => $2)",
            float(delay_s),
            "status = 'requested'",
        )

    async def expiring(self, *, batch_size: int) -> list[Payment]:
        due = await self._conn.fetch(
            """
            SELECT payment_id FROM payments
             WHERE status IN ('requested', 'checkout_open') AND expires_at <= now()
             ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
            """,
            batch_size,
        )
        return await self._read([r["payment_id"] for r in due]) if due else []

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
        await self._set(payment_id, "sync_next_at = now() + make_interval(secs => $2)", float(delay_s))

    async def cancel_at_provider(self, payment_id: UUID) -> None:
        await self._conn.execute(
            "UPDATE payments SET cancel_state = 'due', cancel_next_at = now()"
            " WHERE payment_id = $1 AND cancel_state IS NULL",
            payment_id,
        )

    async def claim_to_cancel(self, *, batch_size: int, lease_s: float) -> list[ClaimedCheckout]:
        return [_claimed(r) for r in await self._conn.fetch(_CLAIM_TO_CANCEL, batch_size, lease_s)]

    async def cancel_done(self, payment_id: UUID, state: str) -> None:
        await self._set(payment_id, "cancel_state = $2, cancel_next_at = NULL", state)

    async def cancel_later(self, payment_id: UUID, delay_s: float) -> None:
        await self._set(payment_id, "cancel_next_at = now() + make_interval(secs => $2)", float(delay_s))

    async def _set(self, payment_id: UUID, assignments: str, value: object, where: str = "true") -> None:
        await self._conn.execute(
            f"UPDATE payments SET {assignments} WHERE payment_id = $1 AND {where}", payment_id, value
        )


def _payment_row(p: NewPayment) -> tuple[object, ...]:
    return (
        p.payment_id,
        p.account_id,
        p.idempotency_key,
        p.scope,
        p.method,
        p.currency,
        p.total_minor,
        p.command_event_id,
        p.correlation_id,
    )


def _claimed(r: asyncpg.Record) -> ClaimedCheckout:
    return ClaimedCheckout(r["payment_id"], r["account_id"], r["checkout_id"], r["updated_at"], r["attempts"])


def _payment(row: asyncpg.Record) -> Payment:
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
_LOCKED = """
WITH locked AS (
    SELECT payment_id FROM payments WHERE payment_id = ANY ($1::uuid[])
     ORDER BY payment_id FOR UPDATE)
""" + _WITH_ALLOCATIONS.format(ids="locked")
_READ = _WITH_ALLOCATIONS.format(ids="unnest($1::uuid[]) AS ids (payment_id)")
_CLAIM_TO_OPEN = """
UPDATE payments SET next_attempt_at = now() + make_interval(secs => $2),
       open_attempts = open_attempts + 1
 WHERE payment_id IN (
    SELECT payment_id FROM payments
     WHERE next_attempt_at <= now() AND status = 'requested'
     ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING payment_id
"""
# The least threshold of any policy selects candidates ($2); each payment's own policy
# decides (the provider worker).
_CLAIM_TO_SYNC = """
WITH due AS (
    SELECT payment_id FROM payments
     WHERE status IN ('checkout_open', 'processing') AND checkout_id IS NOT NULL
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
_INSERT_PAYMENTS = """
INSERT INTO payments (payment_id, account_id, idempotency_key, scope, method, currency, total_minor,
    status, command_event_id, correlation_id, expires_at, next_attempt_at)
SELECT p, a, k, s, m, c, t, 'requested', e, r, now() + make_interval(secs => $10), now()
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
              $8::uuid[], $9::uuid[]) AS n (p, a, k, s, m, c, t, e, r)
"""
_INSERT_ALLOCATIONS = """
INSERT INTO payment_allocations (payment_id, account_id, invoice_number, amount_minor)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])
"""
_INSERT_ANSWERS = """
INSERT INTO commands (account_id, idempotency_key, fingerprint, outcome_type, outcome)
SELECT a, k, f, t, o::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS n (a, k, f, t, o)
"""
