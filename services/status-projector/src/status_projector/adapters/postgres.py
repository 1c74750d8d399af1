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

from status_projector.domain.model import Invoice, Payment, Problem, Restriction
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

    def ddl(self, *, secondary_indexes: bool = True) -> str:
        """Tables of the version. A rebuild creates them without the secondary index
        and adds it (`index_ddl`) after the bulk load, before the version is activated."""
        inv, pay, parked = self.invoices, self.payments, self.parked
        columns = ",\n            ".join(f"{c} {t}" for c, t in _INVOICE_DDL)
        return f"""
        CREATE TABLE IF NOT EXISTS {inv} (
            {columns},
            PRIMARY KEY (account_id, invoice_number)
        ) WITH (fillfactor = 80);
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
            envelope    json        NOT NULL,  -- kept as written: cheaper than jsonb
            parked_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS {parked}_waits ON {parked} (waits_for);
        {self.index_ddl() if secondary_indexes else ""}
        """

    def index_ddl(self) -> str:
        # The API pages an account's invoices in due-date order; a pay-status filter is
        # applied on that scan (an account has at most a few thousand invoices). No
        # indexed column is one the projection changes often (pay status, balance,
        # payment state), so most row updates are HOT: no index entry is written.
        inv = self.invoices
        return f"CREATE INDEX IF NOT EXISTS {inv}_by_due ON {inv} (account_id, due_date, invoice_number);"


async def install(conn: asyncpg.Connection) -> None:
    """Control tables, and version 1 as the active version on a new database."""
    await conn.execute(CONTROL_DDL)
    if await conn.fetchval("SELECT version FROM active_projection") is None:
        await create_version(conn, 1, note="initial")
        await activate(conn, 1)
    else:
        for version in await conn.fetch("SELECT version FROM projection_versions WHERE state <> 'retired'"):
            await conn.execute(VersionTables(version["version"]).ddl())


async def create_version(
    conn: asyncpg.Connection, version: int, *, note: str, secondary_indexes: bool = True
) -> VersionTables:
    tables = VersionTables(version)
    await conn.execute(tables.ddl(secondary_indexes=secondary_indexes))
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

# Invoice columns in row order: the key, the ERP's facts (change only with invoice.synced
# or invoice.balance_changed), then what payment and lifecycle events change. A batch
# of payment events rewrites only the second group.
_KEY = (("account_id", "text"), ("invoice_number", "text"))
_FACTS = (
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
    # jsonb, not text[]: the batch UPDATE passes each column as an array parameter, and
    # unnest() would flatten an array of arrays into one row per element.
    ("posted_refs", "jsonb"),
)
_STATUS = (
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
    ("restricted", "boolean"),
    ("restriction_code", "text"),
    ("restriction_message", "text"),
    ("restriction_at", "timestamptz"),
    ("last_event_at", "timestamptz"),
    ("balance_minor", "bigint"),
    ("pay_status", "text"),
    ("not_payable_reason", "text"),
)
_NOT_NULL = {
    "account_id", "invoice_number", "currency", "invoice_date", "due_date", "total_minor",
    "open_amount_minor", "erp_status", "erp_version", "billing_country", "posted_refs",
    "registration_version", "closed_version", "succeeded", "restricted", "balance_minor", "pay_status",
}  # fmt: skip
_INVOICE_DDL = [(c, t + (" NOT NULL" if c in _NOT_NULL else "")) for c, t in (*_KEY, *_FACTS, *_STATUS)]
INVOICE_COLUMNS = [c for c, _ in (*_KEY, *_FACTS, *_STATUS)]
_FACTS_END = len(_KEY) + len(_FACTS)  # values[2:_FACTS_END] are the facts

_STATES = PaymentState._value2member_map_
_PAY_STATUSES = PayStatus._value2member_map_
_REASONS = NotPayableReason._value2member_map_


def _dump_amounts(amounts: dict[str, int]) -> str:
    # Same text as PostgreSQL's jsonb output for these small maps, so an unchanged row
    # compares equal to what was loaded.
    return json.dumps(amounts, sort_keys=True) if amounts else "{}"


def _load_amounts(text: str) -> dict[str, int]:
    return json.loads(text) if text != "{}" else {}


def _invoice_from_row(row: tuple[Any, ...]) -> Invoice:
    (
        account_id, invoice_number, currency, order_number, po_number, invoice_date, due_date,
        total_minor, open_amount_minor, erp_status, erp_version, billing_country, posted_refs,
        registration, registration_version, closed_reason, closed_version, succeeded,
        current_payment_id, current_payment_state, current_payment_amount, current_payment_at,
        problem_code, problem_message, problem_at,
        restricted, restriction_code, restriction_message, restriction_at,
        last_event_at, balance_minor, pay_status, not_payable_reason,
    ) = row  # fmt: skip
    return Invoice(
        account_id=account_id,
        invoice_number=invoice_number,
        currency=currency,
        order_number=order_number,
        po_number=po_number,
        invoice_date=invoice_date,
        due_date=due_date,
        total_minor=total_minor,
        open_amount_minor=open_amount_minor,
        erp_status=erp_status,
        erp_version=erp_version,
        billing_country=billing_country,
        posted_refs=json.loads(posted_refs),
        registration=registration,
        registration_version=registration_version,
        closed_reason=closed_reason,
        closed_version=closed_version,
        succeeded=_load_amounts(succeeded),
        current_payment_id=current_payment_id,
        current_payment_state=_STATES[current_payment_state] if current_payment_state is not None else None,
        current_payment_amount=current_payment_amount,
        current_payment_at=current_payment_at,
        last_problem=Problem(problem_code, problem_message, problem_at) if problem_code is not None else None,
        restriction=(
            Restriction(restricted, restriction_code, restriction_message, restriction_at)
            if restriction_at is not None
            else None
        ),
        last_event_at=last_event_at,
        balance_minor=balance_minor,
        pay_status=_PAY_STATUSES[pay_status],  # type: ignore[arg-type]
        not_payable_reason=_REASONS[not_payable_reason] if not_payable_reason is not None else None,  # type: ignore[arg-type]
    )


def _invoice_values(inv: Invoice) -> tuple[Any, ...]:
    """The row of an invoice, in INVOICE_COLUMNS order, typed as asyncpg returns it."""
    problem = inv.last_problem
    restriction = inv.restriction
    state = inv.current_payment_state
    reason = inv.not_payable_reason
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
        json.dumps(sorted(inv.posted_refs), ensure_ascii=False),
        inv.registration,
        inv.registration_version,
        inv.closed_reason,
        inv.closed_version,
        _dump_amounts(inv.succeeded),
        inv.current_payment_id,
        state.value if state is not None else None,
        inv.current_payment_amount,
        inv.current_payment_at,
        problem.reason_code if problem else None,
        problem.message if problem else None,
        problem.at if problem else None,
        restriction is not None and restriction.restricted,
        restriction.reason_code if restriction else None,
        restriction.message if restriction else None,
        restriction.at if restriction else None,
        inv.last_event_at,
        inv.balance_minor,
        inv.pay_status.value,
        reason.value if reason is not None else None,
    )


PAYMENT_COLUMNS = ["payment_id", "account_id", "state", "state_at", "requested_at", "currency", "allocations"]


def _payment_from_row(row: tuple[Any, ...]) -> Payment:
    payment_id, account_id, state, state_at, requested_at, currency, allocations = row
    return Payment(
        payment_id=payment_id,
        account_id=account_id,
        state=_STATES[state],  # type: ignore[arg-type]
        state_at=state_at,
        requested_at=requested_at,
        currency=currency,
        allocations=_load_amounts(allocations),
    )


def _payment_values(p: Payment) -> tuple[Any, ...]:
    return (
        p.payment_id,
        p.account_id,
        p.state.value,
        p.state_at,
        p.requested_at,
        p.currency,
        _dump_amounts(p.allocations),
    )


def _update_from_arrays(
    table: str, key: Sequence[tuple[str, str]], columns: Sequence[tuple[str, str]]
) -> str:
    """UPDATE of `columns` from parallel arrays, matched on `key` (one statement a batch)."""
    both = [*key, *columns]
    params = ", ".join(f"${n + 1}::{t}[]" for n, (_, t) in enumerate(both))
    names = ", ".join(c for c, _ in both)
    sets = ", ".join(f"{c} = v.{c}" for c, _ in columns)
    match = " AND ".join(f"t.{c} = v.{c}" for c, _ in key)
    return f"UPDATE {table} AS t SET {sets} FROM unnest({params}) AS v({names}) WHERE {match}"


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


# One advisory lock key space for the projector's versions: (class, version).
_LOCK_CLASS = 0x5350  # "SP"


class ReadModelStore:
    """Bulk reads and writes of one version's tables, on the batch's connection.

    Rows are written per batch, once each: new rows by binary COPY, changed rows by
    one UPDATE from arrays (only the payment/lifecycle columns when the ERP facts did
    not change), unchanged rows not at all. What was loaded is remembered to tell
    these apart.
    """

    def __init__(self, conn: asyncpg.Connection, tables: VersionTables) -> None:
        self.conn = conn
        self.tables = tables
        self._loaded_invoices: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._loaded_payments: dict[str, tuple[Any, ...]] = {}

    async def lock(self, *, bulk: bool = False) -> None:
        """Serialise the batches writing this version (the live projector and a replay
        may both write the active one): one lock a batch instead of a lock per row.
        `bulk` (a rebuild): this transaction's commit does not wait for the WAL flush;
        see README "Rebuild speed" for why losing it in a crash is harmless."""
        sql = f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {self.tables.version})"
        if bulk:
            sql += "; SET LOCAL synchronous_commit = off"
        await self.conn.execute(sql)

    async def invoices(self, keys: Iterable[tuple[str, str]]) -> list[Invoice]:
        keys = set(keys)
        if not keys:
            return []
        rows = await self.conn.fetch(
            f"""
            SELECT {", ".join("t." + c for c in INVOICE_COLUMNS)} FROM {self.tables.invoices} t
            JOIN unnest($1::text[], $2::text[]) AS k(account_id, invoice_number)
              USING (account_id, invoice_number)
            """,
            [a for a, _ in keys],
            [n for _, n in keys],
        )
        loaded = []
        for row in rows:
            values = tuple(row)
            self._loaded_invoices[(values[0], values[1])] = values
            loaded.append(_invoice_from_row(values))
        return loaded

    async def payments(self, payment_ids: Iterable[str]) -> list[Payment]:
        ids = list(set(payment_ids))
        if not ids:
            return []
        rows = await self.conn.fetch(
            f"SELECT {', '.join(PAYMENT_COLUMNS)} FROM {self.tables.payments} "
            "WHERE payment_id = ANY($1::text[])",
            ids,
        )
        loaded = []
        for row in rows:
            values = tuple(row)
            self._loaded_payments[values[0]] = values
            loaded.append(_payment_from_row(values))
        return loaded

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
                   occurred_at, envelope
            FROM {self.tables.parked} WHERE waits_for = ANY($1::text[])
            ORDER BY topic, partition, "offset"
            """,
            keys,
        )
        return [ParkedEvent(**dict(r)) for r in rows]

    async def save_invoices(self, invoices: Iterable[Invoice]) -> None:
        new: list[tuple[Any, ...]] = []
        facts: list[tuple[Any, ...]] = []
        status: list[tuple[Any, ...]] = []
        for invoice in invoices:
            values = _invoice_values(invoice)
            before = self._loaded_invoices.get((values[0], values[1]))
            if before is None:
                new.append(values)
            elif values != before:
                if values[2:_FACTS_END] == before[2:_FACTS_END]:
                    status.append(values[:2] + values[_FACTS_END:])
                else:
                    facts.append(values)
        table = self.tables.invoices
        if new:
            await self.conn.copy_records_to_table(table, records=new, columns=INVOICE_COLUMNS)
        if facts:
            await self._update(_update_from_arrays(table, _KEY, (*_FACTS, *_STATUS)), facts)
        if status:
            await self._update(_update_from_arrays(table, _KEY, _STATUS), status)

    async def save_payments(self, payments: Iterable[Payment]) -> None:
        new: list[tuple[Any, ...]] = []
        changed: list[tuple[Any, ...]] = []
        for payment in payments:
            values = _payment_values(payment)
            before = self._loaded_payments.get(values[0])
            if before is None:
                new.append(values)
            elif values != before:
                changed.append(values)
        table = self.tables.payments
        if new:
            await self.conn.copy_records_to_table(table, records=new, columns=PAYMENT_COLUMNS)
        if changed:
            await self._update(
                _update_from_arrays(
                    table,
                    [("payment_id", "text")],
                    [
                        ("state", "text"),
                        ("state_at", "timestamptz"),
                        ("requested_at", "timestamptz"),
                        ("allocations", "jsonb"),
                    ],
                ),
                [(v[0], v[2], v[3], v[4], v[6]) for v in changed],
            )

    async def _update(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        rows.sort()  # a stable order of row locks (the key comes first)
        await self.conn.execute(sql, *(list(column) for column in zip(*rows, strict=True)))

    async def park(self, events: Sequence[ParkedEvent]) -> None:
        if not events:
            return
        rows = sorted(events, key=lambda e: str(e.event_id))
        await self.conn.execute(
            f"""
            INSERT INTO {self.tables.parked} (event_id, waits_for, reason, type, account_id, topic,
                                              partition, "offset", occurred_at, envelope)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::int[], $8::bigint[], $9::timestamptz[], $10::json[])
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
