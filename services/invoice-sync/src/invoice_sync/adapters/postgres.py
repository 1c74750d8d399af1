"""invoice-sync's tables and repositories (schema `invoice_sync`).

Rows are read and written in bulk (one statement per batch, arrays through unnest):
the consumer applies hundreds of ERP documents per transaction.

Locking: the consumer and the registration worker both lock the invoice rows they
change (`FOR UPDATE`, in key order), so a provider answer recorded by the worker and
an ERP change applied by the consumer never overwrite each other's view.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from invoice_sync.domain.model import (
    Invoice,
    InvoiceDetails,
    InvoiceKey,
    PostedPayment,
    ProviderState,
)
from invoice_sync.domain.registration import Intent

SCHEMA = "invoice_sync"

DDL = """
CREATE TABLE IF NOT EXISTS invoices (
    account_id              text        NOT NULL,
    invoice_number          text        NOT NULL,
    erp_version             bigint      NOT NULL,
    erp_status              text        NOT NULL,
    closed_by_snapshot      boolean     NOT NULL DEFAULT false,
    order_number            text,
    po_number               text,
    invoice_date            date,
    due_date                date,
    currency                text,
    total_minor             bigint,
    open_minor              bigint,
    billing_country         text,
    posted_payments         jsonb,
    source_event_id         uuid,
    correlation_id          uuid,
    erp_occurred_at         timestamptz,
    registered_amount_minor bigint,
    registered_currency     text,
    provider_invoice_id     text,
    refusal                 text,
    refused_version         bigint,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, invoice_number)
);
CREATE TABLE IF NOT EXISTS account_snapshots (
    account_id text        PRIMARY KEY,
    sequence   bigint      NOT NULL,
    as_of      timestamptz NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS registration_revisions;
-- One row per invoice whose provider registration is out of date: the newest intent
-- replaces an older one, so a burst of ERP versions costs one provider call.
CREATE TABLE IF NOT EXISTS registrations (
    account_id      text        NOT NULL,
    invoice_number  text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('register', 'withdraw')),
    erp_version     bigint      NOT NULL,
    amount_minor    bigint,
    currency        text,
    revision        bigint      NOT NULL,
    cause_event_id  uuid,
    correlation_id  uuid,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    PRIMARY KEY (account_id, invoice_number)
);
CREATE INDEX IF NOT EXISTS registrations_due ON registrations (next_attempt_at);
"""


async def install(conn: asyncpg.Connection) -> None:
    await conn.execute(DDL)


_INVOICE_COLUMNS = """
    account_id, invoice_number, erp_version, erp_status, closed_by_snapshot, order_number,
    po_number, invoice_date, due_date, currency, total_minor, open_minor, billing_country,
    posted_payments::text AS posted_payments, source_event_id, correlation_id, erp_occurred_at,
    registered_amount_minor, registered_currency, provider_invoice_id, refusal, refused_version
"""


def _invoice(row: asyncpg.Record) -> Invoice:
    details = None
    if row["currency"] is not None:
        details = InvoiceDetails(
            invoice_number=row["invoice_number"],
            order_number=row["order_number"],
            po_number=row["po_number"],
            invoice_date=row["invoice_date"],
            due_date=row["due_date"],
            currency=row["currency"],
            total_minor=row["total_minor"],
            open_minor=row["open_minor"],
            billing_country=row["billing_country"],
            posted_payments=tuple(
                PostedPayment(p["reference"], p["amount_minor"])
                for p in json.loads(row["posted_payments"] or "[]")
            ),
        )
    return Invoice(
        account_id=row["account_id"],
        invoice_number=row["invoice_number"],
        erp_version=row["erp_version"],
        erp_status=row["erp_status"],
        details=details,
        source_event_id=_str(row["source_event_id"]),
        correlation_id=_str(row["correlation_id"]),
        erp_occurred_at=row["erp_occurred_at"],
        closed_by_snapshot=row["closed_by_snapshot"],
        provider=ProviderState(
            registered_amount_minor=row["registered_amount_minor"],
            registered_currency=row["registered_currency"],
            provider_invoice_id=row["provider_invoice_id"],
            refusal=row["refusal"],
            refused_version=row["refused_version"],
        ),
    )


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _keys(keys: Iterable[InvoiceKey]) -> tuple[list[str], list[str]]:
    ordered = sorted(set(keys))
    return [a for a, _ in ordered], [n for _, n in ordered]


async def lock_invoices(
    conn: asyncpg.Connection,
    keys: Iterable[InvoiceKey] = (),
    accounts: Iterable[str] = (),
) -> list[Invoice]:
    """The stored invoices with these keys or of these accounts, locked for this transaction.

    Two statements rather than one with OR: each uses the primary key.
    """
    accounts_, numbers = _keys(keys)
    whole = sorted(set(accounts))
    rows: list[asyncpg.Record] = []
    if whole:
        rows += await conn.fetch(
            f"""
            SELECT {_INVOICE_COLUMNS} FROM invoices WHERE account_id = ANY($1::text[])
            ORDER BY account_id, invoice_number
            FOR UPDATE
            """,
            whole,
        )
    if accounts_:
        rows += await conn.fetch(
            f"""
            SELECT {_INVOICE_COLUMNS}
            FROM invoices JOIN unnest($1::text[], $2::text[]) AS k(a, n)
              ON account_id = k.a AND invoice_number = k.n
            ORDER BY account_id, invoice_number
            FOR UPDATE OF invoices
            """,
            accounts_,
            numbers,
        )
    return [_invoice(r) for r in rows]


class InvoiceRepository:
    """The invoices a unit of work reads and changes, written back in one statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._seen: dict[InvoiceKey, Invoice | None] = {}
        self._whole_accounts: set[str] = set()
        self._dirty: dict[InvoiceKey, Invoice] = {}

    async def preload(self, keys: Iterable[InvoiceKey], accounts: Iterable[str] = ()) -> None:
        wanted = {k for k in keys if k not in self._seen}
        whole = set(accounts) - self._whole_accounts
        if not wanted and not whole:
            return
        for invoice in await lock_invoices(self._conn, wanted, whole):
            self._seen.setdefault(invoice.key, invoice)
        for key in wanted:
            self._seen.setdefault(key, None)
        self._whole_accounts |= whole

    async def get(self, account_id: str, invoice_number: str) -> Invoice | None:
        key = (account_id, invoice_number)
        if key not in self._seen:
            await self.preload([key])
        return self._seen[key]

    async def of_account(self, account_id: str) -> list[Invoice]:
        await self.preload((), [account_id])
        return [i for (a, _), i in self._seen.items() if a == account_id and i is not None]

    def put(self, invoice: Invoice) -> None:
        self._seen[invoice.key] = invoice
        self._dirty[invoice.key] = invoice

    @property
    def changed(self) -> list[Invoice]:
        return list(self._dirty.values())

    async def flush(self) -> None:
        """Write the ERP side of every changed invoice (the provider side is the worker's)."""
        if not self._dirty:
            return
        rows = list(self._dirty.values())
        details = [i.details for i in rows]
        await self._conn.execute(
            """
            INSERT INTO invoices (
                account_id, invoice_number, erp_version, erp_status, closed_by_snapshot,
                order_number, po_number, invoice_date, due_date, currency, total_minor,
                open_minor, billing_country, posted_payments, source_event_id, correlation_id,
                erp_occurred_at)
            SELECT a, n, v, s, cs, o, po, idate, ddate, c, t, om, bc, pp::jsonb, se, co, oa
            FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bool[],
                        $6::text[], $7::text[], $8::date[], $9::date[], $10::text[],
                        $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::uuid[],
                        $16::uuid[], $17::timestamptz[])
                 AS u(a, n, v, s, cs, o, po, idate, ddate, c, t, om, bc, pp, se, co, oa)
            ON CONFLICT (account_id, invoice_number) DO UPDATE SET
                erp_version = EXCLUDED.erp_version,
                erp_status = EXCLUDED.erp_status,
                closed_by_snapshot = EXCLUDED.closed_by_snapshot,
                order_number = EXCLUDED.order_number,
                po_number = EXCLUDED.po_number,
                invoice_date = EXCLUDED.invoice_date,
                due_date = EXCLUDED.due_date,
                currency = EXCLUDED.currency,
                total_minor = EXCLUDED.total_minor,
                open_minor = EXCLUDED.open_minor,
                billing_country = EXCLUDED.billing_country,
                posted_payments = EXCLUDED.posted_payments,
                source_event_id = EXCLUDED.source_event_id,
                correlation_id = EXCLUDED.correlation_id,
                erp_occurred_at = EXCLUDED.erp_occurred_at,
                updated_at = now()
            """,
            [i.account_id for i in rows],
            [i.invoice_number for i in rows],
            [i.erp_version for i in rows],
            [i.erp_status for i in rows],
            [i.closed_by_snapshot for i in rows],
            [d.order_number if d else None for d in details],
            [d.po_number if d else None for d in details],
            [d.invoice_date if d else None for d in details],
            [d.due_date if d else None for d in details],
            [d.currency if d else None for d in details],
            [d.total_minor if d else None for d in details],
            [d.open_minor if d else None for d in details],
            [d.billing_country if d else None for d in details],
            [_payments_json(d) for d in details],
            [i.source_event_id for i in rows],
            [i.correlation_id for i in rows],
            [i.erp_occurred_at for i in rows],
        )
        self._dirty.clear()


def _payments_json(details: InvoiceDetails | None) -> str | None:
    if details is None:
        return None
    if not details.posted_payments:
        return "[]"
    return json.dumps(
        [{"reference": p.reference, "amount_minor": p.amount_minor} for p in details.posted_payments],
        separators=(",", ":"),
    )


async def save_provider_states(conn: asyncpg.Connection, invoices: Sequence[Invoice]) -> None:
    """Write what the provider now holds for each invoice (the worker's side of the row)."""
    if not invoices:
        return
    await conn.execute(
        """
        UPDATE invoices AS i SET
            registered_amount_minor = u.amount, registered_currency = u.currency,
            provider_invoice_id = u.pid, refusal = u.refusal, refused_version = u.refused,
            updated_at = now()
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                    $7::bigint[]) AS u(a, n, amount, currency, pid, refusal, refused)
        WHERE i.account_id = u.a AND i.invoice_number = u.n
        """,
        [i.account_id for i in invoices],
        [i.invoice_number for i in invoices],
        [i.provider.registered_amount_minor for i in invoices],
        [i.provider.registered_currency for i in invoices],
        [i.provider.provider_invoice_id for i in invoices],
        [i.provider.refusal for i in invoices],
        [i.provider.refused_version for i in invoices],
    )


async def lock_invoice_rows(conn: asyncpg.Connection, keys: Iterable[InvoiceKey]) -> None:
    """Lock these invoices for this transaction, in key order (as `lock_invoices` does),
    without reading them."""
    accounts, numbers = _keys(keys)
    if not accounts:
        return
    await conn.fetchval(
        """
        SELECT count(*) FROM (
            SELECT 1 FROM invoices JOIN unnest($1::text[], $2::text[]) AS k(a, n)
              ON account_id = k.a AND invoice_number = k.n
            ORDER BY account_id, invoice_number
            FOR UPDATE OF invoices) AS locked
        """,
        accounts,
        numbers,
    )


@dataclass(frozen=True, slots=True)
class AcceptedRegistration:
    """The provider accepted to collect `amount_minor` for the invoice."""

    account_id: str
    invoice_number: str
    amount_minor: int
    currency: str
    provider_invoice_id: str


@dataclass(frozen=True, slots=True)
class RecordedRegistration:
    """An accepted registration of the invoice's current open amount, now recorded."""

    account_id: str
    invoice_number: str
    erp_version: int
    source_event_id: UUID | None
    correlation_id: UUID | None
    amount_minor: int
    currency: str
    provider_invoice_id: str


async def record_current_registrations(
    conn: asyncpg.Connection, accepted: Sequence[AcceptedRegistration]
) -> list[RecordedRegistration]:
    """Record, in one statement, each accepted registration that is still the invoice's
    current open amount, and settle its pending call; the ones recorded are returned.

    This is the common case of `registration.record_outcome` + `intent_for` done in SQL
    (the provider now holds exactly what the invoice says, so nothing is left to ask,
    whatever intent is queued): an open invoice whose open amount and currency are the
    ones registered, and that does not already record this very answer. Any other answer
    (the invoice moved on meanwhile, or another worker recorded it) is not touched here
    and goes through the domain. The caller holds the invoices' locks.
    """
    if not accepted:
        return []
    rows = await conn.fetch(
        """
        WITH recorded AS (
            UPDATE invoices AS i SET
                registered_amount_minor = u.amount, registered_currency = u.currency,
                provider_invoice_id = u.pid, refusal = NULL, refused_version = NULL,
                updated_at = now()
            FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
                 AS u(a, n, amount, currency, pid)
            WHERE i.account_id = u.a AND i.invoice_number = u.n
              AND i.erp_status = 'open' AND i.open_minor = u.amount AND i.currency = u.currency
              AND (i.registered_amount_minor, i.registered_currency, i.provider_invoice_id,
                   i.refusal, i.refused_version)
                  IS DISTINCT FROM (u.amount, u.currency, u.pid, NULL::text, NULL::bigint)
            RETURNING i.account_id, i.invoice_number, i.erp_version, i.source_event_id,
                      i.correlation_id, u.amount, u.currency, u.pid
        ), settled AS (
            DELETE FROM registrations AS r USING recorded
            WHERE r.account_id = recorded.account_id AND r.invoice_number = recorded.invoice_number
        )
        SELECT * FROM recorded
        """,
        [a.account_id for a in accepted],
        [a.invoice_number for a in accepted],
        [a.amount_minor for a in accepted],
        [a.currency for a in accepted],
        [a.provider_invoice_id for a in accepted],
    )
    return [RecordedRegistration(*r) for r in rows]


class SnapshotRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def sequence(self, account_id: str) -> int | None:
        value = await self._conn.fetchval(
            "SELECT sequence FROM account_snapshots WHERE account_id = $1 FOR UPDATE", account_id
        )
        return None if value is None else int(value)

    async def record(self, account_id: str, sequence: int, as_of: datetime) -> None:
        await self._conn.execute(
            """
            INSERT INTO account_snapshots (account_id, sequence, as_of) VALUES ($1, $2, $3)
            ON CONFLICT (account_id) DO UPDATE
               SET sequence = EXCLUDED.sequence, as_of = EXCLUDED.as_of
            """,
            account_id,
            sequence,
            as_of,
        )


@dataclass(frozen=True, slots=True)
class PendingRegistration:
    """A claimed row of `registrations`: one provider call to make."""

    account_id: str
    invoice_number: str
    intent: Intent
    revision: int
    cause_event_id: str | None
    correlation_id: str | None
    attempts: int

    @property
    def key(self) -> InvoiceKey:
        return (self.account_id, self.invoice_number)


def _pending(row: asyncpg.Record) -> PendingRegistration:
    return PendingRegistration(
        account_id=row["account_id"],
        invoice_number=row["invoice_number"],
        intent=Intent(row["action"], row["erp_version"], row["amount_minor"], row["currency"]),
        revision=row["revision"],
        cause_event_id=_str(row["cause_event_id"]),
        correlation_id=_str(row["correlation_id"]),
        attempts=row["attempts"],
    )


class RegistrationQueue:
    """Provider calls still to make, one row per invoice; the newest intent wins."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def schedule(self, items: Sequence[tuple[Invoice, Intent]]) -> None:
        """Replace each invoice's pending call with `intent`, due now."""
        if not items:
            return
        await self._conn.execute(
            """
            INSERT INTO registrations AS r (
                account_id, invoice_number, action, erp_version, amount_minor, currency,
                revision, cause_event_id, correlation_id, attempts, next_attempt_at, last_error)
            SELECT a, n, act, v, amt, cur, nextval('registration_revisions'), ce, co, 0, now(), NULL
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                        $6::text[], $7::uuid[], $8::uuid[]) AS u(a, n, act, v, amt, cur, ce, co)
            ON CONFLICT (account_id, invoice_number) DO UPDATE SET
                action = EXCLUDED.action, erp_version = EXCLUDED.erp_version,
                amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,
                revision = EXCLUDED.revision, cause_event_id = EXCLUDED.cause_event_id,
                correlation_id = EXCLUDED.correlation_id, attempts = 0,
                next_attempt_at = now(), last_error = NULL
            """,
            [i.account_id for i, _ in items],
            [i.invoice_number for i, _ in items],
            [t.action for _, t in items],
            [t.erp_version for _, t in items],
            [t.amount_minor for _, t in items],
            [t.currency for _, t in items],
            [i.source_event_id for i, _ in items],
            [i.correlation_id for i, _ in items],
        )

    async def drop(self, keys: Iterable[InvoiceKey]) -> None:
        accounts, numbers = _keys(keys)
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
            RETURNING r.*
            """,
            limit,
            lease_s,
        )
        return [_pending(r) for r in rows]

    async def revisions(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, int]:
        accounts, numbers = _keys(keys)
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

    async def due_count(self) -> int:
        return int(await self._conn.fetchval("SELECT count(*) FROM registrations"))
