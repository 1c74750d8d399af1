"""Tables of the read model, in versions, and the bulk reads and writes of a batch.

A *version* is one complete copy of the read model: `invoices_v<N>`, `payments_v<N>`
and `parked_v<N>`, filled by the consumer `projection_v<N>` whose offsets live in
`consumer_offsets` (same transaction as the rows, so each version is exactly-once on
its own). `active_projection` points at the version the API serves; a rebuild fills
a new version while the old one serves and then moves the pointer in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from status_projector.domain.model import Invoice, Payment, Problem
from status_projector.domain.status import NotPayableReason, PaymentState, PayStatus

SCHEMA = "status_projector"

CONTROL_DDL = """
CREATE TABLE IF NOT EXISTS projection_versions (
    version       integer     PRIMARY KEY,
    consumer      text        NOT NULL UNIQUE,
    state         text        NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    last_event_at timestamptz,
    note          text
);
CREATE TABLE IF NOT EXISTS active_projection (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   integer NOT NULL REFERENCES projection_versions (version),
    switched_at timestamptz NOT NULL DEFAULT now()
);
"""


def consumer_name(version: int) -> str:
    return f"projection_v{version}"


@dataclass(frozen=True)
class VersionTables:
    version: int

    @property
    def invoices(self) -> str:
        return f"invoices_v{self.version}"

    @property
    def payments(self) -> str:
        return f"payments_v{self.version}"

    @property
    def parked(self) -> str:
        return f"parked_v{self.version}"

    @property
    def consumer(self) -> str:
        return consumer_name(self.version)

    def ddl(self) -> str:
        inv, pay, parked = self.invoices, self.payments, self.parked
        return f"""
        CREATE TABLE IF NOT EXISTS {inv} (
            account_id             text        NOT NULL,
            invoice_number         text        NOT NULL,
            currency               text        NOT NULL,
            order_number           text,
            po_number              text,
            invoice_date           date        NOT NULL,
            due_date               date        NOT NULL,
            total_minor            bigint      NOT NULL,
            open_amount_minor      bigint      NOT NULL,
            erp_status             text        NOT NULL,
            erp_version            bigint      NOT NULL,
            billing_country        text        NOT NULL,
            posted_refs            jsonb       NOT NULL,
            registration           text,
            registration_version   bigint      NOT NULL,
            closed_reason          text,
            closed_version         bigint      NOT NULL,
            succeeded              jsonb       NOT NULL,
            current_payment_id     text,
            current_payment_state  text,
            current_payment_amount bigint,
            current_payment_at     timestamptz,
            problem_code           text,
            problem_message        text,
            problem_at             timestamptz,
            last_event_at          timestamptz,
            balance_minor          bigint      NOT NULL,
            pay_status             text        NOT NULL,
            not_payable_reason     text,
            PRIMARY KEY (account_id, invoice_number)
        ) WITH (fillfactor = 80);
        CREATE INDEX IF NOT EXISTS {inv}_by_due ON {inv} (account_id, due_date, invoice_number);
        CREATE INDEX IF NOT EXISTS {inv}_by_status
            ON {inv} (account_id, pay_status, due_date, invoice_number);
        CREATE TABLE IF NOT EXISTS {pay} (
            payment_id   text        PRIMARY KEY,
            account_id   text        NOT NULL,
            state        text        NOT NULL,
            state_at     timestamptz NOT NULL,
            requested_at timestamptz NOT NULL,
            currency     text        NOT NULL,
            allocations  jsonb       NOT NULL
        ) WITH (fillfactor = 80);
        CREATE TABLE IF NOT EXISTS {parked} (
            event_id    uuid        PRIMARY KEY,
            waits_for   text        NOT NULL,
            reason      text        NOT NULL,
            type        text        NOT NULL,
            account_id  text        NOT NULL,
            topic       text        NOT NULL,
            partition   integer     NOT NULL,
            "offset"    bigint      NOT NULL,
            occurred_at timestamptz NOT NULL,
            envelope    jsonb       NOT NULL,
            parked_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS {parked}_waits ON {parked} (waits_for);
        """


async def install(conn: asyncpg.Connection) -> None:
    """Control tables, and version 1 as the active version on a new database."""
    await conn.execute(CONTROL_DDL)
    if await conn.fetchval("SELECT version FROM active_projection") is None:
        await create_version(conn, 1, note="initial")
        await activate(conn, 1)
    else:
        for version in await conn.fetch("SELECT version FROM projection_versions WHERE state <> 'retired'"):
            await conn.execute(VersionTables(version["version"]).ddl())


async def create_version(conn: asyncpg.Connection, version: int, *, note: str) -> VersionTables:
    tables = VersionTables(version)
    await conn.execute(tables.ddl())
    await conn.execute(
        """
        INSERT INTO projection_versions (version, consumer, state, note)
        VALUES ($1, $2, 'building', $3) ON CONFLICT (version) DO NOTHING
        """,
        version,
        tables.consumer,
        note,
    )
    return tables


async def activate(conn: asyncpg.Connection, version: int) -> int | None:
    """Point the API and the live projector at `version`; returns the previous version."""
    async with conn.transaction():
        previous = await conn.fetchval("SELECT version FROM active_projection FOR UPDATE")
        await conn.execute(
            """
            INSERT INTO active_projection (singleton, version) VALUES (true, $1)
            ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, switched_at = now()
            """,
            version,
        )
        await conn.execute(
            "UPDATE projection_versions SET state = 'active', activated_at = now() WHERE version = $1",
            version,
        )
        if previous is not None and previous != version:
            await conn.execute(
                "UPDATE projection_versions SET state = 'retired' WHERE version = $1", previous
            )
    return previous  # type: ignore[no-any-return]


async def active_version(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    version = await conn.fetchval("SELECT version FROM active_projection")
    if version is None:
        raise LookupError("no active read-model version; was the schema installed?")
    return int(version)


async def drop_version(conn: asyncpg.Connection, version: int) -> None:
    tables = VersionTables(version)
    async with conn.transaction():
        for name in (tables.invoices, tables.payments, tables.parked):
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.execute("DELETE FROM consumer_offsets WHERE consumer = $1", tables.consumer)
        await conn.execute("DELETE FROM processed_events WHERE consumer = $1", tables.consumer)
        await conn.execute("DELETE FROM projection_versions WHERE version = $1", version)


# --- rows <-> entities ------------------------------------------------------------------


# (column, type) of the invoice rows, in the order _invoice_values yields them
_INVOICE_SCHEMA = (
    ("account_id", "text"),
    ("invoice_number", "text"),
    ("currency", "text"),
    ("order_number", "text"),
    ("po_number", "text"),
    ("invoice_date", "date"),
    ("due_date", "date"),
    ("total_minor", "bigint"),
    ("open_amount_minor", "bigint"),
    ("erp_status", "text"),
    ("erp_version", "bigint"),
    ("billing_country", "text"),
    ("posted_refs", "jsonb"),
    ("registration", "text"),
    ("registration_version", "bigint"),
    ("closed_reason", "text"),
    ("closed_version", "bigint"),
    ("succeeded", "jsonb"),
    ("current_payment_id", "text"),
    ("current_payment_state", "text"),
    ("current_payment_amount", "bigint"),
    ("current_payment_at", "timestamptz"),
    ("problem_code", "text"),
    ("problem_message", "text"),
    ("problem_at", "timestamptz"),
    ("last_event_at", "timestamptz"),
    ("balance_minor", "bigint"),
    ("pay_status", "text"),
    ("not_payable_reason", "text"),
)
INVOICE_COLUMNS = [c for c, _ in _INVOICE_SCHEMA]
_INVOICE_TYPES = [t for _, t in _INVOICE_SCHEMA]


def _invoice_from_row(row: asyncpg.Record) -> Invoice:
    problem = (
        Problem(row["problem_code"], row["problem_message"], row["problem_at"])
        if row["problem_code"] is not None
        else None
    )
    state = row["current_payment_state"]
    reason = row["not_payable_reason"]
    return Invoice(
        account_id=row["account_id"],
        invoice_number=row["invoice_number"],
        currency=row["currency"],
        order_number=row["order_number"],
        po_number=row["po_number"],
        invoice_date=row["invoice_date"],
        due_date=row["due_date"],
        total_minor=row["total_minor"],
        open_amount_minor=row["open_amount_minor"],
        erp_status=row["erp_status"],
        erp_version=row["erp_version"],
        billing_country=row["billing_country"],
        posted_refs=json.loads(row["posted_refs"]),
        registration=row["registration"],
        registration_version=row["registration_version"],
        closed_reason=row["closed_reason"],
        closed_version=row["closed_version"],
        succeeded=json.loads(row["succeeded"]),
        current_payment_id=row["current_payment_id"],
        current_payment_state=PaymentState(state) if state is not None else None,
        current_payment_amount=row["current_payment_amount"],
        current_payment_at=row["current_payment_at"],
        last_problem=problem,
        last_event_at=row["last_event_at"],
        balance_minor=row["balance_minor"],
        pay_status=PayStatus(row["pay_status"]),
        not_payable_reason=NotPayableReason(reason) if reason is not None else None,
    )


def _invoice_values(inv: Invoice) -> tuple[Any, ...]:
    problem = inv.last_problem
    return (
        inv.account_id,
        inv.invoice_number,
        inv.currency,
        inv.order_number,
        inv.po_number,
        inv.invoice_date,
        inv.due_date,
        inv.total_minor,
        inv.open_amount_minor,
        inv.erp_status,
        inv.erp_version,
        inv.billing_country,
        json.dumps(sorted(inv.posted_refs)),
        inv.registration,
        inv.registration_version,
        inv.closed_reason,
        inv.closed_version,
        json.dumps(inv.succeeded, sort_keys=True),
        inv.current_payment_id,
        inv.current_payment_state.value if inv.current_payment_state is not None else None,
        inv.current_payment_amount,
        inv.current_payment_at,
        problem.reason_code if problem else None,
        problem.message if problem else None,
        problem.at if problem else None,
        inv.last_event_at,
        inv.balance_minor,
        inv.pay_status.value,
        inv.not_payable_reason.value if inv.not_payable_reason is not None else None,
    )


def _payment_from_row(row: asyncpg.Record) -> Payment:
    return Payment(
        payment_id=row["payment_id"],
        account_id=row["account_id"],
        state=PaymentState(row["state"]),
        state_at=row["state_at"],
        requested_at=row["requested_at"],
        currency=row["currency"],
        allocations=json.loads(row["allocations"]),
    )


@dataclass(frozen=True)
class ParkedEvent:
    event_id: Any
    waits_for: str
    reason: str
    type: str
    account_id: str
    topic: str
    partition: int
    offset: int
    occurred_at: datetime
    envelope: str

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


class ReadModelStore:
    """Bulk reads and writes of one version's tables, on the batch's connection."""

    def __init__(self, conn: asyncpg.Connection, tables: VersionTables) -> None:
        self.conn = conn
        self.tables = tables

    async def invoices(self, keys: Iterable[tuple[str, str]]) -> list[Invoice]:
        keys = sorted(set(keys))
        if not keys:
            return []
        rows = await self.conn.fetch(
            f"""
            SELECT t.* FROM {self.tables.invoices} t
            JOIN unnest($1::text[], $2::text[]) AS k(account_id, invoice_number)
              USING (account_id, invoice_number)
            FOR UPDATE OF t
            """,
            [a for a, _ in keys],
            [n for _, n in keys],
        )
        return [_invoice_from_row(r) for r in rows]

    async def payments(self, payment_ids: Iterable[str]) -> list[Payment]:
        ids = sorted(set(payment_ids))
        if not ids:
            return []
        rows = await self.conn.fetch(
            f"SELECT * FROM {self.tables.payments} WHERE payment_id = ANY($1::text[]) FOR UPDATE",
            ids,
        )
        return [_payment_from_row(r) for r in rows]

    async def parked_waiting_for(self, keys: Iterable[str]) -> list[ParkedEvent]:
        keys = sorted(set(keys))
        if not keys:
            return []
        # Usually nothing is parked: one cheap look saves matching every new key.
        if not await self.conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {self.tables.parked})"):
            return []
        rows = await self.conn.fetch(
            f"""
            SELECT event_id, waits_for, reason, type, account_id, topic, partition, "offset",
                   occurred_at, envelope::text AS envelope
            FROM {self.tables.parked} WHERE waits_for = ANY($1::text[])
            ORDER BY topic, partition, "offset" FOR UPDATE
            """,
            keys,
        )
        return [ParkedEvent(**dict(r)) for r in rows]

    async def save_invoices(self, invoices: Sequence[Invoice]) -> None:
        if not invoices:
            return
        columns = list(zip(*(_invoice_values(i) for i in sorted(invoices, key=lambda i: i.key)), strict=True))
        params = ", ".join(f"${n + 1}::{t}[]" for n, t in enumerate(_INVOICE_TYPES))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INVOICE_COLUMNS[2:])
        await self.conn.execute(
            f"""
            INSERT INTO {self.tables.invoices} ({", ".join(INVOICE_COLUMNS)})
            SELECT * FROM unnest({params})
            ON CONFLICT (account_id, invoice_number) DO UPDATE SET {updates}
            """,
            *[list(c) for c in columns],
        )

    async def save_payments(self, payments: Sequence[Payment]) -> None:
        if not payments:
            return
        ordered = sorted(payments, key=lambda p: p.payment_id)
        await self.conn.execute(
            f"""
            INSERT INTO {self.tables.payments}
                (payment_id, account_id, state, state_at, requested_at, currency, allocations)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                                 $5::timestamptz[], $6::text[], $7::jsonb[])
            ON CONFLICT (payment_id) DO UPDATE SET
                state = EXCLUDED.state, state_at = EXCLUDED.state_at,
                requested_at = EXCLUDED.requested_at, allocations = EXCLUDED.allocations
            """,
            [p.payment_id for p in ordered],
            [p.account_id for p in ordered],
            [p.state.value for p in ordered],
            [p.state_at for p in ordered],
            [p.requested_at for p in ordered],
            [p.currency for p in ordered],
            [json.dumps(p.allocations, sort_keys=True) for p in ordered],
        )

    async def park(self, events: Sequence[ParkedEvent]) -> None:
        if not events:
            return
        rows = sorted(events, key=lambda e: str(e.event_id))
        await self.conn.execute(
            f"""
            INSERT INTO {self.tables.parked} (event_id, waits_for, reason, type, account_id, topic,
                                              partition, "offset", occurred_at, envelope)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::int[], $8::bigint[], $9::timestamptz[], $10::jsonb[])
            ON CONFLICT (event_id) DO UPDATE SET waits_for = EXCLUDED.waits_for,
                                                 reason = EXCLUDED.reason
            """,
            [e.event_id for e in rows],
            [e.waits_for for e in rows],
            [e.reason for e in rows],
            [e.type for e in rows],
            [e.account_id for e in rows],
            [e.topic for e in rows],
            [e.partition for e in rows],
            [e.offset for e in rows],
            [e.occurred_at for e in rows],
            [e.envelope for e in rows],
        )

    async def unpark(self, event_ids: Sequence[Any]) -> None:
        if event_ids:
            await self.conn.execute(
                f"DELETE FROM {self.tables.parked} WHERE event_id = ANY($1::uuid[])",
                list(event_ids),
            )

    async def note_progress(self, last_event_at: datetime) -> None:
        await self.conn.execute(
            """
            UPDATE projection_versions
               SET last_event_at = GREATEST(last_event_at, $2)
             WHERE version = $1
            """,
            self.tables.version,
            last_event_at,
        )
