"""The queue of provider calls still to make (table `registrations`), one row per
invoice: the newest intent replaces an older one, so a burst of ERP versions costs one
provider call. What a unit of work schedules or drops is written at its commit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import asyncpg

from invoice_sync.domain.model import Invoice, InvoiceKey, Payable
from invoice_sync.domain.registration import Intent, PendingRegistration, QueuedCall
from payments_platform import tracing

from .repositories import key_arrays

Wanted = tuple[Invoice | Payable, Intent] | None


def _pending(row: asyncpg.Record) -> PendingRegistration:
    """A row as `claim` returns it, in that order."""
    account_id, number, action, version, amount, currency, revision, cause, correlation, attempts = row
    intent = Intent(action, version, amount, currency)
    return PendingRegistration(account_id, number, intent, revision, cause, correlation, attempts)


class RegistrationQueue:
    """Provider calls still to make, one row per invoice; the newest intent wins."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._wanted: dict[InvoiceKey, Wanted] = {}

    def schedule(self, invoice: Invoice | Payable, intent: Intent) -> None:
        self._wanted[invoice.key] = (invoice, intent)

    def drop(self, key: InvoiceKey) -> None:
        self._wanted[key] = None

    def update(self, calls: Mapping[InvoiceKey, QueuedCall]) -> None:
        self._wanted.update(calls)

    async def flush(self) -> None:
        await self._drop([k for k, w in self._wanted.items() if w is None])
        await self._schedule([w for w in self._wanted.values() if w is not None])
        self._wanted.clear()

    async def _schedule(self, items: Sequence[tuple[Invoice | Payable, Intent]]) -> None:
        """Replace each invoice's pending call with `intent`, due now."""
        if not items:
            return
        await self._conn.execute(
            """
            INSERT INTO registrations AS r (
                account_id, invoice_number, action, erp_version, amount_minor, currency,
                revision, cause_event_id, correlation_id, attempts, next_attempt_at, last_error, traceparent)
            SELECT a, n, act, v, amt, cur, nextval('registration_revisions'), ce, co, 0, now(), NULL, tp
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                        $6::text[], $7::uuid[], $8::uuid[], $9::text[])
                 AS u(a, n, act, v, amt, cur, ce, co, tp)
            ON CONFLICT (account_id, invoice_number) DO UPDATE SET
                action = EXCLUDED.action, erp_version = EXCLUDED.erp_version,
                amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,
                revision = EXCLUDED.revision, cause_event_id = EXCLUDED.cause_event_id,
                correlation_id = EXCLUDED.correlation_id, attempts = 0,
                next_attempt_at = now(), last_error = NULL, traceparent = EXCLUDED.traceparent
            """,
            [i.account_id for i, _ in items],
            [i.invoice_number for i, _ in items],
            [t.action for _, t in items],
            [t.erp_version for _, t in items],
            [t.amount_minor for _, t in items],
            [t.currency for _, t in items],
            [i.source_event_id for i, _ in items],
            [i.correlation_id for i, _ in items],
            # The span of the document that queued the call (tracing on only).
            [tracing.context_for(i.source_event_id)[0] for i, _ in items] if tracing.ENABLED else [],
        )

    async def _drop(self, keys: Iterable[InvoiceKey]) -> None:
        accounts, numbers = key_arrays(keys)
        if not accounts:
            return
        await self._conn.execute(
            """
            DELETE FROM registrations
            WHERE (account_id, invoice_number) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            """,
            accounts,
            numbers,
        )

    async def due_now(self, key: InvoiceKey) -> bool:
        due = await self._conn.fetchval(
            "UPDATE registrations SET next_attempt_at = now(), attempts = 0"
            " WHERE account_id = $1 AND invoice_number = $2 RETURNING true",
            *key,
        )
        return bool(due)

    async def claim(self, limit: int, lease_s: float) -> list[PendingRegistration]:
        """Take up to `limit` due calls; they are not due again for `lease_s` (a crashed
        worker's claims come back by themselves)."""
        rows = await self._conn.fetch(
            """
            UPDATE registrations AS r
               SET next_attempt_at = now() + make_interval(secs => $2), attempts = r.attempts + 1
              FROM (SELECT account_id, invoice_number FROM registrations
                    WHERE next_attempt_at <= now()
                    ORDER BY next_attempt_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED) AS due
             WHERE r.account_id = due.account_id AND r.invoice_number = due.invoice_number
            RETURNING r.account_id, r.invoice_number, r.action, r.erp_version, r.amount_minor,
                      r.currency, r.revision, r.cause_event_id::text, r.correlation_id::text,
                      r.attempts
            """,
            limit,
            lease_s,
        )
        return [_pending(r) for r in rows]

    async def traces_of(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, str]:
        accounts, numbers = key_arrays(keys)
        rows = await self._conn.fetch(
            """
            SELECT account_id, invoice_number, traceparent FROM registrations
            WHERE (account_id, invoice_number) IN (SELECT * FROM unnest($1::text[], $2::text[]))
              AND traceparent IS NOT NULL
            """,
            accounts,
            numbers,
        )
        return {(r["account_id"], r["invoice_number"]): r["traceparent"] for r in rows}

    async def revisions(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, int]:
        accounts, numbers = key_arrays(keys)
        rows = await self._conn.fetch(
            """
            SELECT account_id, invoice_number, revision FROM registrations
            WHERE (account_id, invoice_number) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            ORDER BY account_id, invoice_number
            FOR UPDATE
            """,
            accounts,
            numbers,
        )
        return {(r["account_id"], r["invoice_number"]): r["revision"] for r in rows}

    async def reschedule(self, items: Sequence[tuple[PendingRegistration, float]], error: str) -> None:
        """Try again after the given delays, unless a newer intent replaced the call."""
        if not items:
            return
        await self._conn.execute(
            """
            UPDATE registrations AS r
               SET next_attempt_at = now() + make_interval(secs => u.delay), last_error = $5
              FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[]) AS u(a, n, rev, delay)
             WHERE r.account_id = u.a AND r.invoice_number = u.n AND r.revision = u.rev
            """,
            [p.account_id for p, _ in items],
            [p.invoice_number for p, _ in items],
            [p.revision for p, _ in items],
            [d for _, d in items],
            error[:500],
        )
