"""payment-intake's tables (schema `payment_intake`) and the repositories over them.

The one rule the database itself enforces: an invoice has at most one open payment
(`one_open_payment_per_invoice`). However many pay commands race, across batches,
partitions or processes, only one of them can insert its open allocation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from payment_intake.domain.intake import AccountView, InvoiceFacts
from payment_intake.domain.payment import OPEN, PaymentStatus

DDL = """
CREATE TABLE IF NOT EXISTS invoices (
    account_id           text    NOT NULL,
    invoice_number       text    NOT NULL,
    synced               boolean NOT NULL DEFAULT false,
    erp_version          bigint  NOT NULL DEFAULT -1,
    currency             text,
    total_minor          bigint,
    open_amount_minor    bigint  NOT NULL DEFAULT 0,
    erp_status           text    NOT NULL DEFAULT 'open',
    billing_country      text    NOT NULL DEFAULT '',
    posted_refs          text[]  NOT NULL DEFAULT '{}',
    closed               boolean NOT NULL DEFAULT false,
    registered           boolean NOT NULL DEFAULT false,
    registration_version bigint  NOT NULL DEFAULT -1,
    PRIMARY KEY (account_id, invoice_number)
);
CREATE INDEX IF NOT EXISTS invoices_by_number ON invoices (invoice_number);
-- Whether the merchant policy restricts the invoice (announced on payments.events when it
-- changes); added after the first release, hence the ALTER for existing schemas.
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS restricted boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS payments (
    payment_id          uuid        PRIMARY KEY,
    account_id          text        NOT NULL,
    idempotency_key     text        NOT NULL,
    scope               text        NOT NULL,
    method              text        NOT NULL,
    currency            text        NOT NULL,
    total_minor         bigint      NOT NULL,
    status              text        NOT NULL,
    command_event_id    uuid        NOT NULL,
    correlation_id      uuid        NOT NULL,
    expires_at          timestamptz NOT NULL,
    next_attempt_at     timestamptz,
    open_attempts       integer     NOT NULL DEFAULT 0,
    checkout_id         text,
    checkout_url        text,
    confirmed_minor     bigint,
    confirmed_currency  text,
    provider_payment_ref text,
    end_reason          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payments_to_open ON payments (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS payments_expiring ON payments (expires_at)
    WHERE status IN ('requested', 'checkout_open');

CREATE TABLE IF NOT EXISTS payment_allocations (
    payment_id     uuid    NOT NULL REFERENCES payments (payment_id),
    account_id     text    NOT NULL,
    invoice_number text    NOT NULL,
    amount_minor   bigint  NOT NULL CHECK (amount_minor > 0),
    is_open        boolean NOT NULL DEFAULT true,
    succeeded      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (payment_id, invoice_number)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_payment_per_invoice
    ON payment_allocations (account_id, invoice_number) WHERE is_open;
CREATE INDEX IF NOT EXISTS succeeded_allocations
    ON payment_allocations (account_id, invoice_number) WHERE succeeded;

CREATE TABLE IF NOT EXISTS commands (
    account_id      text        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     text        NOT NULL,
    outcome_type    text        NOT NULL,
    outcome         jsonb       NOT NULL,
    answered_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, idempotency_key)
);

CREATE TABLE IF NOT EXISTS webhooks_received (
    webhook_id  text        PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS callback_log (
    id             bigserial   PRIMARY KEY,
    payment_id     uuid,
    webhook_id     text        NOT NULL,
    provider_event text        NOT NULL,
    verdict        text        NOT NULL,
    note           text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

-- Retention (payment_intake.retention): the oldest answers and webhook ids are found by
-- age, and an answer is kept while the payment under its key is open.
CREATE INDEX IF NOT EXISTS commands_age ON commands (answered_at);
CREATE INDEX IF NOT EXISTS webhooks_received_age ON webhooks_received (received_at);
CREATE INDEX IF NOT EXISTS payments_by_key ON payments (account_id, idempotency_key);
"""


async def install(conn: asyncpg.Connection) -> None:
    await conn.execute(DDL)


class InvoiceFactsRepository:
    """Our copy of the invoice facts from `invoices`; newest ERP version wins."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def synced(
        self,
        account_id: str,
        invoice_number: str,
        *,
        erp_version: int,
        currency: str,
        total_minor: int,
        open_amount_minor: int,
        erp_status: str,
        billing_country: str,
        posted_refs: list[str],
        restricted: bool,
    ) -> bool | None:
        """Apply a newer version of the invoice; returns whether it *was* restricted before
        (False for a new invoice), or None when the version was stale and nothing changed."""
        # The CTE reads the row as it was before this statement changed it.
        return await self.conn.fetchval(  # type: ignore[no-any-return]
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
            erp_version,
            currency,
            total_minor,
            open_amount_minor,
            erp_status,
            billing_country,
            posted_refs,
            restricted,
        )

    async def registration(
        self, account_id: str, invoice_number: str, *, erp_version: int, registered: bool
    ) -> None:
        await self.conn.execute(
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
        await self.conn.execute(
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

    async def account_view(self, account_id: str, numbers: list[str] | None) -> AccountView:
        """The account's invoices (all, or the named ones) with balance and pending state."""
        which = "i.invoice_number = ANY ($2::text[])" if numbers is not None else "i.account_id = $1"
        rows = await self.conn.fetch(
            _ACCOUNT_VIEW.format(which=which), account_id, numbers if numbers is not None else []
        )
        known = False
        own: dict[str, InvoiceFacts] = {}
        foreign: set[str] = set()
        for r in rows:
            if r["invoice_number"] is None:
                known = True
            elif r["account_id"] != account_id:
                foreign.add(r["invoice_number"])
            else:
                own[r["invoice_number"]] = InvoiceFacts(
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
        return AccountView(known=known, invoices=own, foreign=frozenset(foreign))

    async def account_views(self, wanted: list[tuple[str, list[str] | None]]) -> dict[str, AccountView]:
        """`account_view` for several commands in two or three round trips: per account, the
        invoices any of its commands named (all of them if one pays the balance)."""
        whole = sorted({a for a, numbers in wanted if numbers is None})
        pairs = sorted({(a, n) for a, numbers in wanted if numbers is not None for n in numbers})
        accounts = sorted({a for a, _ in wanted})
        rows = await self.conn.fetch(
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
            for r in await self.conn.fetch(
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


# Named invoices are looked up by number across accounts, so an invoice of another
# account is told apart from one that does not exist.
_ACCOUNT_VIEW = f"""
{_FACTS}
 WHERE i.synced AND {{which}} AND cardinality($2::text[]) >= 0
UNION ALL
SELECT $1, NULL, NULL, 0, NULL, false, '', false, 0, false
 WHERE EXISTS (SELECT 1 FROM invoices WHERE account_id = $1 AND synced)
"""


@dataclass(frozen=True)
class StoredCommand:
    fingerprint: str
    outcome_type: str
    outcome: dict[str, Any]


class CommandRepository:
    """Idempotency keys and the first answer given to each (per account)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, account_id: str, key: str) -> StoredCommand | None:
        row = await self.conn.fetchrow(
            "SELECT fingerprint, outcome_type, outcome FROM commands"
            " WHERE account_id = $1 AND idempotency_key = $2",
            account_id,
            key,
        )
        if row is None:
            return None
        return StoredCommand(row["fingerprint"], row["outcome_type"], json.loads(row["outcome"]))

    async def get_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], StoredCommand]:
        """The stored answers of several (account, key) pairs in one round trip."""
        if not keys:
            return {}
        rows = await self.conn.fetch(
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

    async def answered(
        self, account_id: str, key: str, fingerprint: str, outcome_type: str, outcome: str
    ) -> None:
        await self.conn.execute(
            "INSERT INTO commands (account_id, idempotency_key, fingerprint, outcome_type, outcome)"
            " VALUES ($1, $2, $3, $4, $5::jsonb)",
            account_id,
            key,
            fingerprint,
            outcome_type,
            outcome,
        )


@dataclass(frozen=True)
class Payment:
    payment_id: UUID
    account_id: str
    idempotency_key: str
    status: PaymentStatus
    currency: str
    total_minor: int
    method: str
    scope: str
    command_event_id: UUID
    correlation_id: UUID
    checkout_id: str | None
    expires_at: datetime
    open_attempts: int
    allocations: tuple[tuple[str, int], ...]


class NewPayment(NamedTuple):
    """A requested payment to store (its allocations are stored beside it)."""

    payment_id: UUID
    account_id: str
    idempotency_key: str
    scope: str
    method: str
    currency: str
    total_minor: int
    command_event_id: UUID
    correlation_id: UUID


class PaymentRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def open_new(
        self,
        *,
        payment_id: UUID,
        account_id: str,
        idempotency_key: str,
        scope: str,
        method: str,
        currency: str,
        allocations: tuple[tuple[str, int], ...],
        command_event_id: UUID,
        correlation_id: UUID,
        ttl_s: int,
    ) -> bool:
        """Store a requested payment; False (and nothing stored) if an invoice already has one."""
        total = sum(a for _, a in allocations)
        try:
            async with self.conn.transaction():  # a savepoint: a lost race leaves no trace
                await self.conn.execute(
                    """
                    INSERT INTO payments (payment_id, account_id, idempotency_key, scope, method,
                        currency, total_minor, status, command_event_id, correlation_id,
                        expires_at, next_attempt_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', $8, $9,
                            now() + make_interval(secs => $10), now())
                    """,
                    payment_id,
                    account_id,
                    idempotency_key,
                    scope,
                    method,
                    currency,
                    total,
                    command_event_id,
                    correlation_id,
                    float(ttl_s),
                )
                await self.conn.execute(
                    """
                    INSERT INTO payment_allocations (payment_id, account_id, invoice_number, amount_minor)
                    SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[])
                    """,
                    payment_id,
                    account_id,
                    [n for n, _ in allocations],
                    [a for _, a in allocations],
                )
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def write_batch(
        self,
        payments: list[NewPayment],
        allocations: list[tuple[UUID, str, str, int]],
        answered: list[tuple[str, str, str, str, str]],
        *,
        ttl_s: int,
    ) -> bool:
        """A batch's requested payments, their allocations and its answers (account, key,
        fingerprint, outcome type, outcome JSON) in three statements; False, with nothing
        stored, if a unique index refused a row (an invoice or key taken meanwhile)."""
        try:
            async with self.conn.transaction():  # a savepoint
                if payments:
                    columns = list(zip(*payments, strict=True))
                    await self.conn.execute(_INSERT_PAYMENTS, *columns, float(ttl_s))
                    await self.conn.execute(_INSERT_ALLOCATIONS, *zip(*allocations, strict=True))
                if answered:
                    await self.conn.execute(_INSERT_ANSWERS, *zip(*answered, strict=True))
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def get_many_for_update(self, payment_ids: list[UUID]) -> list[Payment]:
        """Several payments, locked, in one round trip (the checkout opener's rounds)."""
        rows = await self.conn.fetch(
            """
            WITH locked AS (
                SELECT payment_id FROM payments WHERE payment_id = ANY ($1::uuid[])
                 ORDER BY payment_id FOR UPDATE)
            SELECT p.*, array_agg(a.invoice_number ORDER BY a.invoice_number) AS numbers,
                   array_agg(a.amount_minor ORDER BY a.invoice_number) AS amounts
              FROM locked JOIN payments p USING (payment_id)
              JOIN payment_allocations a USING (payment_id)
             GROUP BY p.payment_id
            """,
            payment_ids,
        )
        return [_payment(r) for r in rows]

    async def get_for_update(self, payment_id: UUID) -> Payment | None:
        # Lock first, then read: the row read is the row this transaction will change.
        if (
            await self.conn.fetchval("SELECT 1 FROM payments WHERE payment_id = $1 FOR UPDATE", payment_id)
            is None
        ):
            return None
        row = await self.conn.fetchrow(
            """
            SELECT p.*, array_agg(a.invoice_number ORDER BY a.invoice_number) AS numbers,
                   array_agg(a.amount_minor ORDER BY a.invoice_number) AS amounts
              FROM payments p JOIN payment_allocations a USING (payment_id)
             WHERE p.payment_id = $1
             GROUP BY p.payment_id
            """,
            payment_id,
        )
        return None if row is None else _payment(row)

    async def move(
        self,
        payment_id: UUID,
        to: PaymentStatus,
        *,
        reason: str | None = None,
        checkout_id: str | None = None,
        checkout_url: str | None = None,
        confirmed_minor: int | None = None,
        confirmed_currency: str | None = None,
        provider_payment_ref: str | None = None,
    ) -> None:
        """Record a transition the state machine decided; close allocations on an end state."""
        await self.conn.execute(
            """
            UPDATE payments SET status = $2, updated_at = now(),
                   end_reason = COALESCE($3, end_reason),
                   checkout_id = COALESCE(checkout_id, $4),
                   checkout_url = COALESCE($5, checkout_url),
                   confirmed_minor = COALESCE($6, confirmed_minor),
                   confirmed_currency = COALESCE($7, confirmed_currency),
                   provider_payment_ref = COALESCE($8, provider_payment_ref),
                   next_attempt_at = CASE WHEN $2 = 'requested' THEN next_attempt_at END
             WHERE payment_id = $1
            """,
            payment_id,
            to.value,
            reason,
            checkout_id,
            checkout_url,
            confirmed_minor,
            confirmed_currency,
            provider_payment_ref,
        )
        if to not in OPEN:
            await self.conn.execute(
                "UPDATE payment_allocations SET is_open = false, succeeded = $2 WHERE payment_id = $1",
                payment_id,
                to is PaymentStatus.SUCCEEDED,
            )

    async def note_confirmation(
        self,
        payment_id: UUID,
        *,
        confirmed_minor: int | None,
        confirmed_currency: str | None,
        provider_payment_ref: str | None,
    ) -> None:
        await self.conn.execute(
            """
            UPDATE payments SET confirmed_minor = $2, confirmed_currency = $3,
                   provider_payment_ref = COALESCE($4, provider_payment_ref), updated_at = now()
             WHERE payment_id = $1
            """,
            payment_id,
            confirmed_minor,
            confirmed_currency,
            provider_payment_ref,
        )

    async def log_callback(
        self, payment_id: UUID | None, webhook_id: str, provider_event: str, verdict: str, note: str
    ) -> None:
        await self.conn.execute(
            "INSERT INTO callback_log (payment_id, webhook_id, provider_event, verdict, note)"
            " VALUES ($1, $2, $3, $4, $5)",
            payment_id,
            webhook_id,
            provider_event,
            verdict,
            note,
        )


_INSERT_PAYMENTS = """
INSERT INTO payments (payment_id, account_id, idempotency_key, scope, method, currency, total_minor,
    status, command_event_id, correlation_id, expires_at, next_attempt_at)
SELECT p, a, k, s, m, c, t, 'requested', e, r, now() + make_interval(secs => $10), now()
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
              $8::uuid[], $9::uuid[]) AS n (p, a, k, s, m, c, t, e, r)
"""
_INSERT_ALLOCATIONS = """
INSERT INTO payment_allocations (payment_id, account_id, invoice_number, amount_minor)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])
"""
_INSERT_ANSWERS = """
INSERT INTO commands (account_id, idempotency_key, fingerprint, outcome_type, outcome)
SELECT a, k, f, t, o::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS n (a, k, f, t, o)
"""


def _payment(row: asyncpg.Record) -> Payment:
    return Payment(
        payment_id=row["payment_id"],
        account_id=row["account_id"],
        idempotency_key=row["idempotency_key"],
        status=PaymentStatus(row["status"]),
        currency=row["currency"],
        total_minor=row["total_minor"],
        method=row["method"],
        scope=row["scope"],
        command_event_id=row["command_event_id"],
        correlation_id=row["correlation_id"],
        checkout_id=row["checkout_id"],
        expires_at=row["expires_at"],
        open_attempts=row["open_attempts"],
        allocations=tuple(zip(row["numbers"], row["amounts"], strict=True)),
    )
