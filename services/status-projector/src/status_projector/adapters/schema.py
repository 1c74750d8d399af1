"""Tables of the read model, in versions.

A *version* is one complete copy of the read model: `invoices_v<N>`, `payments_v<N>`
and `parked_v<N>`, filled by the consumer `projection_v<N>` whose offsets live in
`consumer_offsets` (same transaction as the rows, so each version is exactly-once on
its own). `active_projection` points at the version the API serves; a rebuild fills
a new version while the old one serves and then moves the pointer in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from payments_shared.messaging import offsets
from status_projector.settings import SCHEMA

__all__ = [
    "SCHEMA",
    "VersionTables",
    "activate",
    "active_version",
    "create_version",
    "drop_version",
    "install",
]

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
    def accounts(self) -> str:
        return f"accounts_v{self.version}"

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
        -- Refund columns came after the first release: versions built before get them here.
        {self._added_columns()}
        CREATE TABLE IF NOT EXISTS {self.accounts} (
            account_id              text        PRIMARY KEY,
            balance_payment_allowed boolean     NOT NULL,
            reason_code             text,
            message                 text,
            at                      timestamptz NOT NULL
        );
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

    def _added_columns(self) -> str:
        added = [(c, t) for c, t in _INVOICE_DDL if c.startswith("refund_")]
        return "".join(f"ALTER TABLE {self.invoices} ADD COLUMN IF NOT EXISTS {c} {t};" for c, t in added)

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
        for name in (tables.invoices, tables.payments, tables.parked, tables.accounts):
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await offsets.reset(conn, tables.consumer)
        await conn.execute("DELETE FROM projection_versions WHERE version = $1", version)


# --- the invoice table's columns ---------------------------------------------------------

# Invoice columns in row order: the key, the ERP's facts (change only with invoice.synced
# or invoice.balance_changed), then what payment and lifecycle events change. A batch
# of payment events rewrites only the second group.
KEY = (("account_id", "text"), ("invoice_number", "text"))
FACTS = (
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
STATUS = (
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
    ("refund_payment_id", "text"),
    ("refund_state", "text"),
    ("refund_minor", "bigint"),
    ("refund_reason", "text"),
    ("refund_at", "timestamptz"),
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
_INVOICE_DDL = [(c, t + (" NOT NULL" if c in _NOT_NULL else "")) for c, t in (*KEY, *FACTS, *STATUS)]
INVOICE_COLUMNS = [c for c, _ in (*KEY, *FACTS, *STATUS)]
FACTS_END = len(KEY) + len(FACTS)  # values[2:FACTS_END] are the facts
