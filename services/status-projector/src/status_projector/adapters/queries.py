"""Read side: the queries the HTTP API answers from, against the active version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from .schema import VersionTables

_INVOICE_FIELDS = """
    account_id, invoice_number, order_number, po_number, invoice_date, due_date, currency,
    total_minor, balance_minor, pay_status, not_payable_reason, current_payment_id,
    current_payment_state, current_payment_amount, problem_code, problem_message, problem_at,
    restricted, restriction_code, restriction_message, refund_payment_id, refund_state,
    refund_minor, refund_reason, refund_at, last_event_at
"""


@dataclass(frozen=True)
class Snapshot:
    """Which version answers, how far it has read, and the newest event it applied."""

    version: int
    last_event_at: datetime | None
    offsets: dict[tuple[str, int], int]

    @property
    def tables(self) -> VersionTables:
        return VersionTables(self.version)


class ReadModelQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def snapshot(self, conn: asyncpg.Connection) -> Snapshot:
        # One round trip (every request starts here), and the version, its newest event
        # and its offsets read in one statement's snapshot.
        rows = await conn.fetch(
            """
            SELECT a.version, v.last_event_at, o.topic, o.partition, o.next_offset
            FROM active_projection a JOIN projection_versions v USING (version)
            LEFT JOIN consumer_offsets o ON o.consumer = v.consumer
            """
        )
        if not rows:
            raise LookupError("no active read-model version")
        offsets = {(r["topic"], r["partition"]): r["next_offset"] for r in rows if r["topic"] is not None}
        return Snapshot(rows[0]["version"], rows[0]["last_event_at"], offsets)

    async def invoice(
        self, conn: asyncpg.Connection, snap: Snapshot, account_id: str, invoice_number: str
    ) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {_INVOICE_FIELDS} FROM {snap.tables.invoices} "
            "WHERE account_id = $1 AND invoice_number = $2",
            account_id,
            invoice_number,
        )

    async def account_known(self, conn: asyncpg.Connection, snap: Snapshot, account_id: str) -> bool:
        return bool(
            await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {snap.tables.invoices} WHERE account_id = $1)",
                account_id,
            )
        )

    async def invoices(
        self,
        conn: asyncpg.Connection,
        snap: Snapshot,
        account_id: str,
        *,
        statuses: list[str] | None,
        descending: bool,
        after: tuple[date, str] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        """A page in due-date order (invoice number breaks ties), keyset-paginated."""
        where = ["account_id = $1"]
        args: list[Any] = [account_id]
        if statuses:
            args.append(statuses)
            where.append(f"pay_status = ANY(${len(args)}::text[])")
        if after is not None:
            args += [after[0], after[1]]
            op = "<" if descending else ">"
            where.append(f"(due_date, invoice_number) {op} (${len(args) - 1}, ${len(args)})")
        direction = "DESC" if descending else "ASC"
        args.append(limit)
        rows: list[asyncpg.Record] = await conn.fetch(
            f"SELECT {_INVOICE_FIELDS} FROM {snap.tables.invoices} WHERE {' AND '.join(where)} "
            f"ORDER BY due_date {direction}, invoice_number {direction} LIMIT ${len(args)}",
            *args,
        )
        return rows

    async def account_policy(
        self, conn: asyncpg.Connection, snap: Snapshot, account_id: str
    ) -> asyncpg.Record | None:
        """Payment-intake's last word on paying the account's whole balance (None: none yet)."""
        return await conn.fetchrow(
            f"SELECT balance_payment_allowed, reason_code, message FROM {snap.tables.accounts}"
            " WHERE account_id = $1",
            account_id,
        )

    async def summary(
        self, conn: asyncpg.Connection, snap: Snapshot, account_id: str
    ) -> list[asyncpg.Record]:
        """Balance per currency over invoices still owed (not cancelled or closed)."""
        rows: list[asyncpg.Record] = await conn.fetch(
            f"""
            SELECT currency,
                   sum(balance_minor) FILTER (
                       WHERE not_payable_reason IS DISTINCT FROM 'cancelled'
                         AND not_payable_reason IS DISTINCT FROM 'closed')::bigint AS balance_minor,
                   count(*) AS invoices,
                   count(*) FILTER (WHERE pay_status = 'payable') AS payable,
                   count(*) FILTER (WHERE pay_status = 'pending') AS pending,
                   count(*) FILTER (WHERE pay_status = 'partially_paid') AS partially_paid,
                   count(*) FILTER (WHERE pay_status = 'paid') AS paid,
                   count(*) FILTER (WHERE pay_status = 'not_payable') AS not_payable,
                   count(*) FILTER (
                       WHERE not_payable_reason = 'not_registered' AND balance_minor > 0
                   ) AS unregistered,
                   max(last_event_at) AS last_event_at
            FROM {snap.tables.invoices} WHERE account_id = $1
            GROUP BY currency ORDER BY currency
            """,
            account_id,
        )
        return rows
