"""A run of invoice facts applied in memory and written once ends exactly where the same
facts applied one statement each end: the same rows, the same answers to each fact (was
it restricted, is the account's balance answer news), in runs of every length, and with
several runs in one transaction."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from payment_intake.adapters.repositories import PostgresInvoiceRepository
from payment_intake.adapters.schema import install
from payment_intake.unit_of_work import InvoiceVersion
from payments_platform.database import open_pool

pytestmark = pytest.mark.integration

Fact = tuple[str, str, str, int, Any]


def facts(seed: int, count: int) -> list[Fact]:
    """Facts about a few invoices of a few accounts, versions out of order and repeated,
    registrations and closes before the invoice is synced, policy answers that flip."""
    rng = random.Random(seed)
    out: list[Fact] = []
    for _ in range(count):
        account = f"A{rng.randrange(3)}"
        number = f"INV-{rng.randrange(6)}"
        version = rng.randrange(5)
        kind = rng.choice(["synced", "synced", "registered", "failed", "closed"])
        extra: Any = None
        if kind == "synced":
            status = rng.choice(["open", "open", "closed", "cancelled"])
            extra = (
                InvoiceVersion(
                    erp_version=version,
                    currency="USD",
                    total_minor=10_000 + version,
                    open_amount_minor=rng.randrange(10_001),
                    erp_status=status,
                    billing_country=rng.choice(["US", "CA"]),
                    posted_refs=rng.sample(["p1", "p2", "p3"], rng.randrange(3)),
                    restricted=rng.random() < 0.3,
                ),
                rng.random() < 0.8,  # the account's balance answer
            )
        out.append((kind, account, number, version, extra))
    return out


async def apply(repo: PostgresInvoiceRepository, fact: Fact) -> object:
    kind, account, number, version, extra = fact
    if kind == "synced":
        invoice, allowed = extra
        return (
            await repo.synced(account, number, invoice),
            await repo.account_balance_payment(account, allowed),
        )
    if kind == "closed":
        return await repo.closed(account, number, erp_version=version)
    return await repo.registration(account, number, erp_version=version, registered=kind == "registered")


async def rows(pool: asyncpg.Pool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with pool.acquire() as conn:
        invoices = await conn.fetch("SELECT * FROM invoices ORDER BY account_id, invoice_number")
        accounts = await conn.fetch("SELECT * FROM accounts ORDER BY account_id")
    return [dict(r) for r in invoices], [dict(r) for r in accounts]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_run_of_facts_ends_where_one_statement_each_ends(database_url: str, seed: int) -> None:
    every = facts(seed, 400)
    one_each = await open_pool(database_url, f"facts_one_{seed}", install=install)
    in_runs = await open_pool(database_url, f"facts_runs_{seed}", install=install)
    try:
        answers_one = []
        async with one_each.acquire() as conn:
            for fact in every:
                async with conn.transaction():
                    answers_one.append(await apply(PostgresInvoiceRepository(conn), fact))
        answers_runs = []
        rng = random.Random(seed)
        i = 0
        async with in_runs.acquire() as conn:
            while i < len(every):
                # Several runs in one transaction, as a batch with commands between its
                # facts writes them, or a failed batch applied one message at a time.
                async with conn.transaction():
                    for _ in range(rng.choice([1, 1, 2, 4])):
                        run = every[i : i + rng.choice([1, 2, 5, 17, 60])]
                        i += len(run)
                        repo = PostgresInvoiceRepository(conn)
                        await repo.preload(
                            [(a, n) for _, a, n, _, _ in run], [a for k, a, *_ in run if k == "synced"]
                        )
                        answers_runs += [await apply(repo, fact) for fact in run]
                        await repo.flush()
        assert answers_runs == answers_one
        assert await rows(in_runs) == await rows(one_each)
        news = [a for a in answers_one if isinstance(a, tuple)]
        assert any(a[0] is None for a in news) and any(a[0] is True for a in news) and any(a[1] for a in news)
    finally:
        await one_each.close()
        await in_runs.close()
