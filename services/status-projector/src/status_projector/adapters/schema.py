"""Tables of the read model, in versions.

A *version* is one complete copy of the read model: `invoices_v<N>`, `payments_v<N>`
and `parked_v<N>`, filled by the consumer `projection_v<N>` whose offsets live in
`consumer_offsets` (same transaction as the rows, so each version is exactly-once on
its own). `active_projection` points at the version the API serves; a rebuild fills
a new version while the old one serves and then moves the pointer in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from payments_platform.messaging import offsets
from status_projector.settings import SCHEMA

from .rows import INVOICE_COLUMNS, INVOICE_DDL, PAYMENT_COLUMNS

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
CREATE TABLE IF NOT EXISTS projection_snapshots (
    snapshot   integer     PRIMARY KEY,
    version    integer     NOT NULL,
    rules      text        NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    offsets    jsonb       NOT NULL,
    invoices   bigint      NOT NULL
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
        columns = ",\n            ".join(f"{c} {t}" for c, t in INVOICE_DDL)
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
        added = [(c, t) for c, t in INVOICE_DDL if c.startswith("refund_")]
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


async def next_version(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM projection_versions")) + 1


async def versions_besides(conn: asyncpg.Connection, version: int) -> list[int]:
    """Every other version, newest first."""
    rows = await conn.fetch(
        "SELECT version FROM projection_versions WHERE version <> $1 ORDER BY version DESC", version
    )
    return [r["version"] for r in rows]


async def live_versions(conn: asyncpg.Connection) -> list[tuple[int, str, str]]:
    """(version, consumer, state) of each version that is active or building."""
    rows = await conn.fetch(
        "SELECT version, consumer, state FROM projection_versions WHERE state <> 'retired' ORDER BY version"
    )
    return [(r["version"], r["consumer"], r["state"]) for r in rows]


# --- snapshots: where a rebuild can start instead of the first offset -------------------

_PARKED_COLUMNS = (
    'event_id, waits_for, reason, type, account_id, topic, partition, "offset", occurred_at, envelope, '
    "parked_at"
)
_ACCOUNT_COLUMNS = "account_id, balance_payment_allowed, reason_code, message, at"


def _copies(source: VersionTables | int, target: VersionTables | int) -> list[str]:
    """INSERT ... SELECT of every table of a version or snapshot into another's, by column
    name (a version built before a column was added has it last)."""

    def names(side: VersionTables | int) -> tuple[str, str, str, str]:
        if isinstance(side, VersionTables):
            return side.invoices, side.payments, side.accounts, side.parked
        return (f"snapshot{side}_invoices", f"snapshot{side}_payments", f"snapshot{side}_accounts",
                f"snapshot{side}_parked")  # fmt: skip

    columns = (", ".join(INVOICE_COLUMNS), ", ".join(PAYMENT_COLUMNS), _ACCOUNT_COLUMNS, _PARKED_COLUMNS)
    return [
        f"INSERT INTO {to} ({c}) SELECT {c} FROM {fro}"
        for fro, to, c in zip(names(source), names(target), columns, strict=True)
    ]


@dataclass(frozen=True)
class Snapshot:
    snapshot: int
    version: int
    rules: str
    offsets: dict[tuple[str, int], int]
    invoices: int


async def take_snapshot(conn: asyncpg.Connection, version: int, rules: str, *, keep: int = 2) -> Snapshot:
    """Copy one version's rows and the offsets they reflect, as of one instant (a repeatable
    read: batches committing meanwhile are in neither), and keep the newest `keep`."""
    tables = VersionTables(version)
    async with conn.transaction(isolation="repeatable_read"):
        stored = await offsets.stored_offsets(conn, tables.consumer)
        number = int(await conn.fetchval("SELECT coalesce(max(snapshot), 0) + 1 FROM projection_snapshots"))
        for name, like in zip(
            (f"snapshot{number}_{t}" for t in ("invoices", "payments", "accounts", "parked")),
            (tables.invoices, tables.payments, tables.accounts, tables.parked),
            strict=True,
        ):
            await conn.execute(f"CREATE TABLE {name} (LIKE {like})")
        for statement in _copies(tables, number):
            await conn.execute(statement)
        invoices = int(await conn.fetchval(f"SELECT count(*) FROM snapshot{number}_invoices"))
        await conn.execute(
            "INSERT INTO projection_snapshots (snapshot, version, rules, offsets, invoices)"
            " VALUES ($1, $2, $3, $4::jsonb, $5)",
            number,
            version,
            rules,
            json.dumps([[t, p, o] for (t, p), o in sorted(stored.items())]),
            invoices,
        )
    for old in await conn.fetch(
        "SELECT snapshot FROM projection_snapshots ORDER BY snapshot DESC OFFSET $1", max(1, keep)
    ):
        await drop_snapshot(conn, old["snapshot"])
    return Snapshot(number, version, rules, stored, invoices)


async def drop_snapshot(conn: asyncpg.Connection, number: int) -> None:
    async with conn.transaction():
        for t in ("invoices", "payments", "accounts", "parked"):
            await conn.execute(f"DROP TABLE IF EXISTS snapshot{number}_{t}")
        await conn.execute("DELETE FROM projection_snapshots WHERE snapshot = $1", number)


async def latest_snapshot(conn: asyncpg.Connection, rules: str) -> Snapshot | None:
    """The newest snapshot taken under these projection rules (None: none)."""
    row = await conn.fetchrow(
        "SELECT snapshot, version, rules, offsets::text AS offsets, invoices FROM projection_snapshots"
        " WHERE rules = $1 ORDER BY snapshot DESC LIMIT 1",
        rules,
    )
    if row is None:
        return None
    stored = {(t, p): o for t, p, o in json.loads(row["offsets"])}
    return Snapshot(row["snapshot"], row["version"], row["rules"], stored, row["invoices"])


async def fill_from_snapshot(conn: asyncpg.Connection, snapshot: Snapshot, tables: VersionTables) -> None:
    """A new version's rows from a snapshot, and its consumer's offsets where they stood."""
    async with conn.transaction():
        for statement in _copies(snapshot.snapshot, tables):
            await conn.execute(statement)
        await offsets.rewind(conn, tables.consumer, snapshot.offsets)


async def add_secondary_indexes(conn: asyncpg.Connection, tables: VersionTables) -> None:
    """Built once over the loaded rows of a rebuild instead of maintained row by row."""
    await conn.execute(tables.index_ddl())
