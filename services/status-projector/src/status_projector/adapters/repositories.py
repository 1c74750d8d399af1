"""Bulk reads and writes of one read-model version's tables, on a batch's connection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from status_projector.domain.model import AccountPolicy, Invoice, ParkedEvent, Payment

from .rows import (
    FACTS,
    FACTS_END,
    INVOICE_COLUMNS,
    KEY,
    PAYMENT_COLUMNS,
    PAYMENT_DDL,
    STATUS,
    Stage,
    invoice_from_row,
    invoice_values,
    merge_from_stage,
    payment_from_row,
    payment_values,
)
from .schema import VersionTables

# Staging tables of the batch updates: temporary, emptied at every commit, made by a
# connection's first batch (`lock`).
_FACTS_STAGE = Stage("projector_stage_facts", (*KEY, *FACTS, *STATUS))
_STATUS_STAGE = Stage("projector_stage_status", (*KEY, *STATUS))
_PAYMENT_KEY = (("payment_id", "text"),)
_PAYMENT_CHANGES = tuple(
    (c, t) for c, t in PAYMENT_DDL if c in ("state", "state_at", "requested_at", "allocations")
)
_PAYMENTS_STAGE = Stage("projector_stage_payments", (*_PAYMENT_KEY, *_PAYMENT_CHANGES))
_STAGES = (_FACTS_STAGE, _STATUS_STAGE, _PAYMENTS_STAGE)

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
        `bulk` (a rebuild): no lock, and this transaction's commit does not wait for the
        WAL flush. Nothing else writes a version being built, and a parallel rebuild's
        workers own disjoint partitions, so disjoint accounts and rows (each batch still
        locks its partitions' offsets); see README "Rebuild speed" for why losing a
        commit in a crash is harmless."""
        # The staging tables in the same round trip (after the first batch of a connection,
        # IF NOT EXISTS finds them).
        stages = "; ".join(stage.ddl for stage in _STAGES)
        if bulk:
            await self.conn.execute(f"SET LOCAL synchronous_commit = off; {stages}")
            return
        await self.conn.execute(
            f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {self.tables.version}); {stages}"
        )

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
            loaded.append(invoice_from_row(values))
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
            loaded.append(payment_from_row(values))
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
        # Status columns some row of the batch changed: only those are sent (a batch of
        # payment events changes 6 to 12 of the 25).
        unchanged = list(range(FACTS_END, len(INVOICE_COLUMNS)))
        for invoice in invoices:
            values = invoice_values(invoice)
            before = self._loaded_invoices.get((values[0], values[1]))
            if before is None:
                new.append(values)
            elif values != before:
                if values[2:FACTS_END] == before[2:FACTS_END]:
                    status.append(values)
                    if unchanged:
                        unchanged = [i for i in unchanged if values[i] == before[i]]
                else:
                    facts.append(values)
        table = self.tables.invoices
        if new:
            await self.conn.copy_records_to_table(table, records=new, columns=INVOICE_COLUMNS)
        if facts:
            await self._update(_FACTS_STAGE, table, KEY, (*FACTS, *STATUS), facts)
        if status:
            same = set(unchanged)
            sent = [i for i in range(FACTS_END, len(INVOICE_COLUMNS)) if i not in same]
            await self._update(
                _STATUS_STAGE,
                table,
                KEY,
                [STATUS[i - FACTS_END] for i in sent],
                [(v[0], v[1], *(v[i] for i in sent)) for v in status],
            )

    async def save_payments(self, payments: Iterable[Payment]) -> None:
        new: list[tuple[Any, ...]] = []
        changed: list[tuple[Any, ...]] = []
        for payment in payments:
            values = payment_values(payment)
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
                _PAYMENTS_STAGE,
                table,
                _PAYMENT_KEY,
                _PAYMENT_CHANGES,
                [(v[0], v[2], v[3], v[4], v[6]) for v in changed],
            )

    async def _update(
        self,
        stage: Stage,
        table: str,
        key: Sequence[tuple[str, str]],
        columns: Sequence[tuple[str, str]],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """UPDATE of `columns` from the rows COPY'd into a staging table, one statement.
        COPY encodes a value for a tenth of what an array parameter of `unnest` costs:
        on 17 columns 2.2 against 5.6 µs of client CPU per row, the server's the same
        (bench/write_ab.py)."""
        rows.sort()  # a stable order of row locks (the key comes first)
        names = [c for c, _ in (*key, *columns)]
        await self.conn.copy_records_to_table(stage.name, records=rows, columns=names)
        await self.conn.execute(merge_from_stage(stage.name, table, key, columns))

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

    async def save_account_policies(self, policies: Iterable[AccountPolicy]) -> None:
        """Newest word per account wins, whatever order a rebuild applies them in."""
        rows = sorted(
            (p.account_id, p.balance_payment_allowed, p.reason_code, p.message, p.at) for p in policies
        )
        if not rows:
            return
        await self.conn.execute(
            f"""
            INSERT INTO {self.tables.accounts} AS t
                   (account_id, balance_payment_allowed, reason_code, message, at)
            SELECT * FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[], $5::timestamptz[])
            ON CONFLICT (account_id) DO UPDATE
               SET balance_payment_allowed = EXCLUDED.balance_payment_allowed,
                   reason_code = EXCLUDED.reason_code, message = EXCLUDED.message, at = EXCLUDED.at
             WHERE t.at <= EXCLUDED.at
            """,
            *(list(column) for column in zip(*rows, strict=True)),
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


async def parked_reasons(conn: asyncpg.Connection, tables: VersionTables) -> dict[str, int]:
    """How many events of the version are parked, per reason."""
    rows = await conn.fetch(f"SELECT reason, count(*) AS n FROM {tables.parked} GROUP BY reason")
    return {r["reason"]: r["n"] for r in rows}
