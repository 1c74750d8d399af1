"""The PostgreSQL repository of the payment aggregate: payments, their allocations and
callback log (the checkout work queues over the same rows: checkout_queues.py)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from payment_intake.adapters.payment_rows import lock_payments, read_payments, update_payment
from payment_intake.adapters.queued_work import QueuedWork
from payment_intake.adapters.serialized import Serialized
from payment_intake.domain.commands import Answered
from payment_intake.domain.payment import OPEN, NewPayment, Payment, PaymentStatus
from payments_platform import tracing


class PostgresPaymentRepository:
    def __init__(
        self,
        conn: asyncpg.Connection,
        queued: QueuedWork | None = None,
        serialized: Serialized | None = None,
    ) -> None:
        self._conn = conn
        self._queued = queued
        self._serialized = serialized if serialized is not None else Serialized()

    async def write_run(
        self, opened: Sequence[NewPayment], answered: Sequence[Answered], *, ttl_s: int
    ) -> bool:
        """One statement after a savepoint; a unique index refusing a row undoes it all.

        The savepoint is left for the commit to release (one round trip fewer); a later
        run's savepoint of the same name nests inside it, and rolling back to the name
        undoes the latest one only."""
        if opened and self._queued is not None:
            self._queued.checkouts = True
        payments = [_payment_row(p) for p in opened]
        # The decision's span, for what comes later (tracing on only: a lookup per payment).
        traces = [tracing.context_for(p.command_event_id)[0] for p in opened] if tracing.ENABLED else []
        allocations = [(p.payment_id, p.account_id, n, a) for p in opened for n, a in p.allocations]
        answers = [
            (
                a.account_id,
                a.key,
                a.stored.fingerprint,
                a.stored.outcome_type,
                *self._serialized.outcome(a.stored.outcome),
            )
            for a in answered
        ]
        await self._conn.execute("SAVEPOINT pay_run")
        try:
            await self._conn.execute(
                _WRITE_RUN,
                *_columns(payments, 9),
                float(ttl_s),
                *_columns(allocations, 4),
                *_columns(answers, 6),
                traces,
            )
        except asyncpg.UniqueViolationError:
            await self._conn.execute("ROLLBACK TO SAVEPOINT pay_run")
            return False
        return True

    async def get_for_update(self, payment_id: UUID) -> Payment | None:
        # Lock first, then read: the row read is the row this transaction will change.
        if (
            await self._conn.fetchval("SELECT 1 FROM payments WHERE payment_id = $1 FOR UPDATE", payment_id)
            is None
        ):
            return None
        found = await read_payments(self._conn, [payment_id])
        return found[0] if found else None

    async def account_of(self, payment_id: UUID) -> str | None:
        account: str | None = await self._conn.fetchval(
            "SELECT account_id FROM payments WHERE payment_id = $1", payment_id
        )
        return account

    async def traces_of(self, payment_ids: Sequence[UUID]) -> dict[UUID, str]:
        rows = await self._conn.fetch(
            "SELECT payment_id, traceparent FROM payments"
            " WHERE payment_id = ANY ($1::uuid[]) AND traceparent IS NOT NULL",
            list(payment_ids),
        )
        return {r["payment_id"]: r["traceparent"] for r in rows}

    async def get_many_for_update(self, payment_ids: Sequence[UUID]) -> list[Payment]:
        """Several payments, locked, in one round trip (the checkout opener's rounds)."""
        return await lock_payments(self._conn, payment_ids)

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

    async def checkouts_opened(self, opened: Sequence[tuple[UUID, str, str]]) -> None:
        """`move(..., CHECKOUT_OPEN, checkout_id=, checkout_url=)` of many in one statement."""
        if not opened:
            return
        # The opening's span (tracing on): the provider's webhook goes on from there.
        traces = [tracing.context_for(i)[0] for i, _, _ in opened] if tracing.ENABLED else []
        await self._conn.execute(_CHECKOUTS_OPENED, *zip(*opened, strict=True), traces)

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
        await update_payment(self._conn, payment_id, "checkout_id = COALESCE(checkout_id, $2)", checkout_id)

    async def flag(self, payment_id: UUID, reason: str) -> None:
        await update_payment(self._conn, payment_id, "flag_reason = $2", reason)

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


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """Rows as the column arrays unnest() takes (empty arrays for no rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


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


# A run's payments, their allocations and the answers under the commands' keys, in one
# round trip. The allocations' foreign key is checked at the end of the statement, when
# the payments of the first part are there. An answer's outcome comes as its own JSON (o)
# or as the answer's whole JSON (e, the bytes its outbox row carries): its event id and
# payload are kept.
_WRITE_RUN = """
WITH payments_opened AS (
    INSERT INTO payments (payment_id, account_id, idempotency_key, scope, method, currency,
        total_minor, status, command_event_id, correlation_id, expires_at, next_attempt_at, traceparent)
    SELECT p, a, k, s, m, c, t, 'requested', e, r, now() + make_interval(secs => $10), now(), tp
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                  $7::bigint[], $8::uuid[], $9::uuid[], $21::text[]) AS n (p, a, k, s, m, c, t, e, r, tp)
), allocations AS (
    INSERT INTO payment_allocations (payment_id, account_id, invoice_number, amount_minor)
    SELECT * FROM unnest($11::uuid[], $12::text[], $13::text[], $14::bigint[])
)
INSERT INTO commands (account_id, idempotency_key, fingerprint, outcome_type, outcome)
SELECT a, k, f, t, COALESCE(o::jsonb, jsonb_build_object('event_id', e::jsonb -> 'event_id',
                                                         'payload', e::jsonb -> 'payload'))
  FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[])
    AS n (a, k, f, t, o, e)
"""
_CHECKOUTS_OPENED = """
UPDATE payments p SET status = 'checkout_open', updated_at = now(),
       checkout_id = COALESCE(p.checkout_id, o.checkout_id),
       checkout_url = COALESCE(o.checkout_url, p.checkout_url),
       next_attempt_at = NULL,
       traceparent = COALESCE(o.traceparent, p.traceparent)
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
    AS o (payment_id, checkout_id, checkout_url, traceparent)
 WHERE p.payment_id = o.payment_id
"""
