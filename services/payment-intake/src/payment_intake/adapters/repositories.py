"""The PostgreSQL repositories of invoice facts, answered commands and received webhooks (payments:
payment_repository.py, refunds: refund_repository.py). Repositories only load and store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from payment_intake.adapters.serialized import Serialized
from payment_intake.domain.commands import Answered, StoredCommand
from payment_intake.domain.intake import AccountView, InvoiceFacts
from payment_intake.unit_of_work import InvoiceVersion

# Every column of an invoice row, in order; a run of facts holds rows as lists of these.
_COLUMNS = (
    ("account_id", "text"), ("invoice_number", "text"), ("synced", "boolean"), ("erp_version", "bigint"),
    ("currency", "text"), ("total_minor", "bigint"), ("open_amount_minor", "bigint"), ("erp_status", "text"),
    ("billing_country", "text"), ("posted_refs", "text[]"), ("closed", "boolean"), ("registered", "boolean"),
    ("registration_version", "bigint"), ("restricted", "boolean"),
)  # fmt: skip
_NAMES = [c for c, _ in _COLUMNS]
(_SYNCED, _ERP_VERSION, _CURRENCY, _TOTAL, _OPEN, _STATUS, _COUNTRY, _REFS, _CLOSED, _REGISTERED,
 _REGISTRATION_VERSION, _RESTRICTED) = range(2, 14)  # fmt: skip
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS intake_invoice_stage ("
    + ", ".join(f"{c} {t}" for c, t in _COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
# The stage is emptied by the upsert that reads it, not only at commit: a transaction may
# write several runs (facts, a command, facts again; or one message at a time after a
# batch failed), and a run's rows must not be written again by the next run's upsert.
_UPSERT = (
    "WITH staged AS (DELETE FROM intake_invoice_stage RETURNING *) "
    f"INSERT INTO invoices ({', '.join(_NAMES)}) SELECT {', '.join(_NAMES)} FROM staged "
    "ON CONFLICT (account_id, invoice_number) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _NAMES[2:])
)


def _new_row(account_id: str, invoice_number: str) -> list[Any]:
    """A row as the table's defaults make it."""
    return [account_id, invoice_number, False, -1, None, None, 0, "open", "", [], False, False, -1, False]


class PostgresInvoiceRepository:
    """Our copy of the invoice facts from `invoices`; newest ERP version wins.

    Between `preload` and `flush` (a run of invoice facts) the rows named are read once,
    locked, changed in memory by the same rules as the statements below, and written back
    in one upsert: one statement per fact was 16% of the service's profile while facts
    were fed (bench/results/2026-12-02T0104Z.md#notes). Outside a run, each call is its
    own statement.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._rows: dict[tuple[str, str], list[Any] | None] | None = None
        self._accounts: dict[str, bool | None] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._dirty_accounts: set[str] = set()

    async def preload(self, keys: Sequence[tuple[str, str]], accounts: Sequence[str]) -> None:
        keys = sorted(set(keys))
        rows = await self._conn.fetch(
            f"SELECT {', '.join('i.' + c for c in _NAMES)} FROM invoices i"
            " JOIN unnest($1::text[], $2::text[]) AS k(a, n) ON i.account_id = k.a AND i.invoice_number = k.n"
            " ORDER BY i.account_id, i.invoice_number FOR UPDATE OF i",
            [a for a, _ in keys],
            [n for _, n in keys],
        )
        self._rows = dict.fromkeys(keys)
        for row in rows:
            self._rows[(row["account_id"], row["invoice_number"])] = list(row)
        self._accounts = dict.fromkeys(sorted(set(accounts)))
        for row in await self._conn.fetch(
            "SELECT account_id, balance_payment_allowed FROM accounts WHERE account_id = ANY($1::text[])"
            " ORDER BY account_id FOR UPDATE",
            list(self._accounts),
        ):
            self._accounts[row["account_id"]] = row["balance_payment_allowed"]

    async def flush(self) -> None:
        """Write what the run changed (a no-op outside a run)."""
        if self._rows is None:
            return
        rows = [self._rows[k] for k in sorted(self._dirty)]
        if rows:
            await self._conn.execute(_STAGE_DDL)
            await self._conn.copy_records_to_table("intake_invoice_stage", records=rows, columns=_NAMES)
            await self._conn.execute(_UPSERT)
        accounts = sorted(self._dirty_accounts)
        if accounts:
            await self._conn.execute(
                "INSERT INTO accounts (account_id, balance_payment_allowed)"
                " SELECT * FROM unnest($1::text[], $2::boolean[])"
                " ON CONFLICT (account_id) DO UPDATE"
                " SET balance_payment_allowed = EXCLUDED.balance_payment_allowed",
                accounts,
                [self._accounts[a] for a in accounts],
            )
        self._rows, self._accounts, self._dirty, self._dirty_accounts = None, {}, set(), set()

    def _held(self, account_id: str, invoice_number: str) -> bool:
        return self._rows is not None and (account_id, invoice_number) in self._rows

    def _row(self, key: tuple[str, str]) -> list[Any]:
        assert self._rows is not None
        row = self._rows[key]
        if row is None:
            row = self._rows[key] = _new_row(*key)
        self._dirty.add(key)
        return row

    async def synced(self, account_id: str, invoice_number: str, version: InvoiceVersion) -> bool | None:
        if self._held(account_id, invoice_number):
            assert self._rows is not None
            key = (account_id, invoice_number)
            before = self._rows[key]
            if before is not None and before[_SYNCED] and before[_ERP_VERSION] >= version.erp_version:
                return None
            was_restricted = bool(before[_RESTRICTED]) if before is not None else False
            row = self._row(key)
            row[_SYNCED:] = [
                True, version.erp_version, version.currency, version.total_minor,
                version.open_amount_minor, version.erp_status, version.billing_country,
                list(version.posted_refs), version.erp_status != "open", row[_REGISTERED],
                row[_REGISTRATION_VERSION], version.restricted,
            ]  # fmt: skip
            return was_restricted
        # The CTE reads the row as it was before this statement changed it.
        return await self._conn.fetchval(  # type: ignore[no-any-return]
            """
            WITH before AS (
                SELECT restricted FROM invoices WHERE account_id = $1 AND invoice_number = $2)
            INSERT INTO invoices AS i (account_id, invoice_number, synced, erp_version, currency,
                total_minor, open_amount_minor, erp_status, billing_country, posted_refs, closed,
                restricted)
            VALUES ($1, $2, true, $3, $4, $5, $6, $7, $8, $9, $7 <> 'open', $10)
            ON CONFLICT (account_id, invoice_number) DO UPDATE SET
                synced = true, erp_version = EXCLUDED.erp_version, currency = EXCLUDED.currency,
                total_minor = EXCLUDED.total_minor, open_amount_minor = EXCLUDED.open_amount_minor,
                erp_status = EXCLUDED.erp_status, billing_country = EXCLUDED.billing_country,
                posted_refs = EXCLUDED.posted_refs, closed = EXCLUDED.closed,
                restricted = EXCLUDED.restricted
            WHERE i.erp_version < EXCLUDED.erp_version OR NOT i.synced
            RETURNING COALESCE((SELECT restricted FROM before), false)
            """,
            account_id,
            invoice_number,
            version.erp_version,
            version.currency,
            version.total_minor,
            version.open_amount_minor,
            version.erp_status,
            version.billing_country,
            version.posted_refs,
            version.restricted,
        )

    async def account_balance_payment(self, account_id: str, allowed: bool) -> bool:
        if account_id in self._accounts:
            if self._accounts[account_id] == allowed:
                return False
            self._accounts[account_id] = allowed
            self._dirty_accounts.add(account_id)
            return True
        return bool(
            await self._conn.fetchval(
                """
                INSERT INTO accounts AS a (account_id, balance_payment_allowed) VALUES ($1, $2)
                ON CONFLICT (account_id) DO UPDATE
                   SET balance_payment_allowed = EXCLUDED.balance_payment_allowed
                 WHERE a.balance_payment_allowed <> EXCLUDED.balance_payment_allowed
                RETURNING true
                """,
                account_id,
                allowed,
            )
        )

    async def registration(
        self, account_id: str, invoice_number: str, *, erp_version: int, registered: bool
    ) -> None:
        if self._held(account_id, invoice_number):
            assert self._rows is not None
            before = self._rows[(account_id, invoice_number)]
            if before is None or before[_REGISTRATION_VERSION] <= erp_version:
                row = self._row((account_id, invoice_number))
                row[_REGISTERED], row[_REGISTRATION_VERSION] = registered, erp_version
            return
        await self._conn.execute(
            """
            INSERT INTO invoices AS i (account_id, invoice_number, registered, registration_version)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (account_id, invoice_number) DO UPDATE
               SET registered = EXCLUDED.registered, registration_version = EXCLUDED.registration_version
             WHERE i.registration_version <= EXCLUDED.registration_version
            """,
            account_id,
            invoice_number,
            registered,
            erp_version,
        )

    async def closed(self, account_id: str, invoice_number: str, *, erp_version: int) -> None:
        if self._held(account_id, invoice_number):
            assert self._rows is not None
            before = self._rows[(account_id, invoice_number)]
            if before is None:
                row = self._row((account_id, invoice_number))
                row[_CLOSED], row[_ERP_VERSION] = True, erp_version
            elif before[_ERP_VERSION] <= erp_version:
                row = self._row((account_id, invoice_number))
                row[_CLOSED], row[_ERP_VERSION] = True, max(row[_ERP_VERSION], erp_version)
            return
        await self._conn.execute(
            """
            INSERT INTO invoices AS i (account_id, invoice_number, closed, erp_version)
            VALUES ($1, $2, true, $3)
            ON CONFLICT (account_id, invoice_number) DO UPDATE
               SET closed = true, erp_version = GREATEST(i.erp_version, EXCLUDED.erp_version)
             WHERE i.erp_version <= EXCLUDED.erp_version
            """,
            account_id,
            invoice_number,
            erp_version,
        )

    async def account_views(self, wanted: Sequence[tuple[str, list[str] | None]]) -> dict[str, AccountView]:
        """In two or three round trips: per account, the invoices any of its commands named
        (all of them if one pays the balance)."""
        whole = sorted({a for a, numbers in wanted if numbers is None})
        pairs = sorted({(a, n) for a, numbers in wanted if numbers is not None for n in numbers})
        accounts = sorted({a for a, _ in wanted})
        if not accounts:
            return {}
        rows = await self._conn.fetch(
            _ACCOUNT_VIEWS, [a for a, _ in pairs], [n for _, n in pairs], whole, accounts
        )
        known = {r["account_id"] for r in rows if r["invoice_number"] is None}
        own: dict[str, dict[str, InvoiceFacts]] = {a: {} for a in accounts}
        for r in rows:
            if r["invoice_number"] is not None:
                own[r["account_id"]][r["invoice_number"]] = _facts(r)
        missing = sorted({n for a, n in pairs if a in known and n not in own[a]})
        foreign: dict[str, set[str]] = {a: set() for a in accounts}
        if missing:
            # Rare: told apart from "not found", a number that exists on another account.
            for r in await self._conn.fetch(
                "SELECT DISTINCT account_id, invoice_number FROM invoices"
                " WHERE synced AND invoice_number = ANY ($1::text[])",
                missing,
            ):
                for a, n in pairs:
                    if n == r["invoice_number"] and a != r["account_id"]:
                        foreign[a].add(n)
        return {
            a: AccountView(known=a in known, invoices=own[a], foreign=frozenset(foreign[a])) for a in accounts
        }


def _facts(r: asyncpg.Record) -> InvoiceFacts:
    return InvoiceFacts(
        invoice_number=r["invoice_number"],
        currency=r["currency"],
        open_amount_minor=r["open_amount_minor"],
        erp_status=r["erp_status"],
        closed=r["closed"],
        billing_country=r["billing_country"],
        registered=r["registered"],
        unposted_succeeded_minor=int(r["unposted_minor"]),
        pending=r["pending"],
    )


_FACTS = """
SELECT i.account_id, i.invoice_number, i.currency, i.open_amount_minor, i.erp_status,
       i.closed, i.billing_country, i.registered,
       COALESCE((SELECT sum(a.amount_minor) FROM payment_allocations a
                  WHERE a.account_id = i.account_id AND a.invoice_number = i.invoice_number
                    AND a.succeeded AND NOT (a.payment_id::text = ANY (i.posted_refs))), 0)
           AS unposted_minor,
       EXISTS (SELECT 1 FROM payment_allocations a
                WHERE a.account_id = i.account_id AND a.invoice_number = i.invoice_number
                  AND a.is_open) AS pending
  FROM invoices i
"""

# Own invoices named by (account, number) or whole accounts, then one row per known
# account (invoice_number NULL).
_ACCOUNT_VIEWS = f"""
{_FACTS}
  JOIN unnest($1::text[], $2::text[]) AS w (account_id, invoice_number) USING (account_id, invoice_number)
 WHERE i.synced AND NOT (i.account_id = ANY ($3::text[]))
UNION ALL
{_FACTS}
 WHERE i.synced AND i.account_id = ANY ($3::text[])
UNION ALL
SELECT a, NULL, NULL, 0, NULL, false, '', false, 0, false
  FROM unnest($4::text[]) AS a
 WHERE EXISTS (SELECT 1 FROM invoices WHERE account_id = a AND synced)
"""


class PostgresCommandRepository:
    """Idempotency keys and the first answer given to each (per account)."""

    def __init__(self, conn: asyncpg.Connection, serialized: Serialized | None = None) -> None:
        self._conn = conn
        self._serialized = serialized if serialized is not None else Serialized()

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredCommand]:
        if not keys:
            return {}
        rows = await self._conn.fetch(
            "SELECT c.account_id, c.idempotency_key, c.fingerprint, c.outcome_type, c.outcome"
            " FROM commands c JOIN unnest($1::text[], $2::text[]) AS k (account_id, idempotency_key)"
            " USING (account_id, idempotency_key)",
            [a for a, _ in keys],
            [k for _, k in keys],
        )
        return {
            (r["account_id"], r["idempotency_key"]): StoredCommand(
                r["fingerprint"], r["outcome_type"], json.loads(r["outcome"])
            )
            for r in rows
        }

    async def answered(self, answered: Answered) -> None:
        stored = answered.stored
        await self._conn.execute(
            "INSERT INTO commands (account_id, idempotency_key, fingerprint, outcome_type, outcome)"
            " VALUES ($1, $2, $3, $4, COALESCE($5::jsonb, jsonb_build_object("
            "'event_id', $6::jsonb -> 'event_id', 'payload', $6::jsonb -> 'payload')))",
            answered.account_id,
            answered.key,
            stored.fingerprint,
            stored.outcome_type,
            *self._serialized.outcome(stored.outcome),
        )


class PostgresWebhookRepository:
    """Webhook ids received (`webhooks_received`): a provider's retry is one callback."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def first_receipt(self, webhook_id: str) -> bool:
        return bool(
            await self._conn.fetchval(
                "INSERT INTO webhooks_received (webhook_id) VALUES ($1)"
                " ON CONFLICT DO NOTHING RETURNING true",
                webhook_id,
            )
        )
