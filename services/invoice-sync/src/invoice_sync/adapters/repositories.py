"""invoice-sync's repositories: invoices, account snapshots and the queue of provider
calls, on one transaction's connection.

Rows are read and written in bulk (one statement per batch, arrays through unnest):
the consumer applies hundreds of ERP documents per transaction.

Locking: the consumer and the registration worker both lock the invoice rows they
change (`FOR UPDATE`, in key order), so a provider answer recorded by the worker and
an ERP change applied by the consumer never overwrite each other's view.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import asyncpg

from invoice_sync.domain.model import Invoice, InvoiceKey, Payable

from .rows import INVOICE_COLUMNS, PAYABLE_COLUMNS, invoice_from_row, payable_from_row, payments_json


def key_arrays(keys: Iterable[InvoiceKey]) -> tuple[list[str], list[str]]:
    ordered = sorted(set(keys))
    return [a for a, _ in ordered], [n for _, n in ordered]


async def _lock_invoices(
    conn: asyncpg.Connection,
    keys: Iterable[InvoiceKey] = (),
    accounts: Iterable[str] = (),
) -> list[Invoice]:
    """The stored invoices with these keys or of these accounts, locked for this transaction.

    Two statements rather than one with OR: each uses the primary key.
    """
    accounts_, numbers = key_arrays(keys)
    whole = sorted(set(accounts))
    rows: list[asyncpg.Record] = []
    if whole:
        rows += await conn.fetch(
            f"""
            SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = ANY($1::text[])
            ORDER BY account_id, invoice_number
            FOR UPDATE
            """,
            whole,
        )
    if accounts_:
        rows += await conn.fetch(
            f"""
            SELECT {INVOICE_COLUMNS}
            FROM invoices JOIN unnest($1::text[], $2::text[]) AS k(a, n)
              ON account_id = k.a AND invoice_number = k.n
            ORDER BY account_id, invoice_number
            FOR UPDATE OF invoices
            """,
            accounts_,
            numbers,
        )
    return [invoice_from_row(r) for r in rows]


class InvoiceRepository:
    """The invoices a unit of work reads and changes, written back in one statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._seen: dict[InvoiceKey, Invoice | None] = {}
        self._whole_accounts: set[str] = set()
        self._dirty: dict[InvoiceKey, Invoice] = {}
        self._answered: dict[InvoiceKey, Payable] = {}

    async def preload(self, keys: Iterable[InvoiceKey], accounts: Iterable[str] = ()) -> None:
        wanted = {k for k in keys if k not in self._seen}
        whole = set(accounts) - self._whole_accounts
        if not wanted and not whole:
            return
        for invoice in await _lock_invoices(self._conn, wanted, whole):
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

    async def payables(self, keys: Iterable[InvoiceKey]) -> dict[InvoiceKey, Payable]:
        accounts, numbers = key_arrays(keys)
        if not accounts:
            return {}
        rows = await self._conn.fetch(
            f"""
            SELECT {PAYABLE_COLUMNS}
            FROM invoices JOIN unnest($1::text[], $2::text[]) AS k(a, n)
              ON account_id = k.a AND invoice_number = k.n
            ORDER BY account_id, invoice_number
            FOR UPDATE OF invoices
            """,
            accounts,
            numbers,
        )
        payables = [payable_from_row(r) for r in rows]
        return {p.key: p for p in payables}

    def put_provider_states(self, invoices: Iterable[Payable]) -> None:
        for payable in invoices:
            key = payable.key
            self._answered[key] = payable
            seen = self._seen.get(key)
            if seen is not None:
                self._seen[key] = replace(seen, provider=payable.provider)

    async def flush(self) -> None:
        """Write the ERP side of the invoices ERP documents changed, and the provider side
        of those the provider answered about."""
        await self._flush_erp_side()
        await _save_provider_states(self._conn, list(self._answered.values()))
        self._answered.clear()

    async def _flush_erp_side(self) -> None:
        if not self._dirty:
            return
        rows = list(self._dirty.values())
        # COPY into a staging table, then one upsert from it: COPY encodes 17 columns for
        # 2.2 µs of client CPU per row where `unnest` of array parameters took 5.6, the
        # server's share the same (bench/write_ab.py; asyncpg's encoding was 16% of this
        # service's CPU, bench/results/2026-12-02T0059Z-profile.md).
        await self._conn.execute(_STAGE_DDL)
        await self._conn.copy_records_to_table(
            "invoice_sync_stage",
            records=[
                (
                    i.account_id,
                    i.invoice_number,
                    i.erp_version,
                    i.erp_status,
                    i.closed_by_snapshot,
                    d.order_number if d else None,
                    d.po_number if d else None,
                    d.invoice_date if d else None,
                    d.due_date if d else None,
                    d.currency if d else None,
                    d.total_minor if d else None,
                    d.open_minor if d else None,
                    d.billing_country if d else None,
                    payments_json(d),
                    i.source_event_id,
                    i.correlation_id,
                    i.erp_occurred_at,
                )
                for i in rows
                for d in (i.details,)
            ],
            columns=[c for c, _ in _STAGED],
        )
        await self._conn.execute(_UPSERT_FROM_STAGE)
        self._dirty.clear()


# The ERP side of an invoice row, as staged for the batch's upsert.
_STAGED = (
    ("account_id", "text"), ("invoice_number", "text"), ("erp_version", "bigint"), ("erp_status", "text"),
    ("closed_by_snapshot", "bool"), ("order_number", "text"), ("po_number", "text"),
    ("invoice_date", "date"), ("due_date", "date"), ("currency", "text"), ("total_minor", "bigint"),
    ("open_minor", "bigint"), ("billing_country", "text"), ("posted_payments", "jsonb"),
    ("source_event_id", "uuid"), ("correlation_id", "uuid"), ("erp_occurred_at", "timestamptz"),
)  # fmt: skip
# Temporary, emptied at every commit; made by a connection's first batch.
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS invoice_sync_stage ("
    + ", ".join(f"{c} {t}" for c, t in _STAGED)
    + ") ON COMMIT DELETE ROWS"
)
# Emptied by the upsert that reads it, not only at commit: after a failed batch the
# messages are applied one by one in one transaction, each flushing its own rows.
_UPSERT_FROM_STAGE = (
    "WITH staged AS (DELETE FROM invoice_sync_stage RETURNING *) "
    f"INSERT INTO invoices ({', '.join(c for c, _ in _STAGED)}) "
    f"SELECT {', '.join(c for c, _ in _STAGED)} FROM staged "
    "ON CONFLICT (account_id, invoice_number) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c, _ in _STAGED[2:])
    + ", updated_at = now()"
)


async def _save_provider_states(conn: asyncpg.Connection, invoices: Sequence[Payable]) -> None:
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
