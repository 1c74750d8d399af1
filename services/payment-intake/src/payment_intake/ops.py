"""Operator actions behind `payment-intake-ops`: what is stuck, flagged or refundable;
status sync now; refunds an operator asks for. The CLI only draws; tests call these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from payment_intake.adapters.payment_rows import sql_in
from payment_intake.adapters.providers import MerchantProviders
from payment_intake.adapters.unit_of_work import units
from payment_intake.domain.payment import AWAITING_PROVIDER, OPEN
from payment_intake.handlers.provider_answers import Heard
from payment_intake.handlers.refunds import refund_by_operator
from payment_intake.settings import PaymentIntakeSettings, load_policies
from payment_intake.unit_of_work import IntakeConfig, UnitsOfWork
from payment_intake.workers import ProviderWorker
from payments_contracts.topics import TopicRegistry
from payments_platform.ops import LagScope, fixed_scope

CONSUMER = "intake"


@dataclass
class Operating:
    """What an operator's command needs: the service's database, topics and provider."""

    pool: asyncpg.Pool
    registry: TopicRegistry
    bootstrap: str
    units: UnitsOfWork
    worker: ProviderWorker
    provider: MerchantProviders

    @classmethod
    def of(cls, pool: asyncpg.Pool, settings: PaymentIntakeSettings) -> Operating:
        registry = TopicRegistry(settings.topic_prefix)
        provider = MerchantProviders.of(settings)
        config = IntakeConfig(policies=load_policies(settings), checkout_ttl_s=settings.checkout_ttl_s)
        unit = units(pool, registry, config, on_published=lambda: None)
        worker = ProviderWorker(unit, provider, config)
        return cls(pool, registry, settings.kafka_bootstrap, unit, worker, provider)


@dataclass(frozen=True)
class StuckPayment:
    payment_id: UUID
    account_id: str
    status: str
    age_s: int
    checkout_id: str | None
    syncs: int
    next_sync: datetime | None  # None: status sync does not ask about it (no checkout, flagged)


async def stuck(ctx: Operating, older_than_s: float) -> list[StuckPayment]:
    """Open payments that have not moved for `older_than_s`, with when status sync asks next."""
    rows = await ctx.pool.fetch(
        f"""
        SELECT payment_id, account_id, status, checkout_id, updated_at, sync_next_at, flag_reason,
               round(extract(epoch FROM now() - updated_at))::bigint AS age_s, sync_attempts
          FROM payments
         WHERE status IN ({sql_in(OPEN)})
           AND updated_at <= now() - make_interval(secs => $1)
         ORDER BY updated_at
        """,
        float(older_than_s),
    )
    return [
        StuckPayment(
            r["payment_id"],
            r["account_id"],
            r["status"],
            r["age_s"],
            r["checkout_id"],
            r["sync_attempts"],
            _next_sync(ctx, r),
        )
        for r in rows
    ]


def _next_sync(ctx: Operating, row: Any) -> datetime | None:
    """When the provider worker asks about this payment, by its own rule and settings;
    None for the payments its claim leaves out (no checkout yet, flagged, not open)."""
    if (
        row["status"] not in AWAITING_PROVIDER
        or row["checkout_id"] is None
        or row["flag_reason"] is not None
    ):
        return None
    return ctx.worker.next_sync_at(row["account_id"], row["updated_at"], row["sync_next_at"])


async def flagged(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Payments flagged for money the provider took that they must not keep."""
    return list(
        await pool.fetch(
            """
        SELECT p.payment_id, p.account_id, p.status, p.flag_reason,
               COALESCE(p.confirmed_minor, p.total_minor) AS taken_minor,
               COALESCE(p.confirmed_currency, p.currency) AS currency,
               r.status AS refund_status, r.refund_id
          FROM payments p LEFT JOIN refunds r USING (payment_id)
         WHERE p.flag_reason IS NOT NULL
         ORDER BY p.updated_at
        """
        )
    )


async def refundable(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Flagged payments an operator may refund: none asked yet, or the last refund failed."""
    return [r for r in await flagged(pool) if r["refund_status"] in (None, "failed")]


async def open_payments(pool: asyncpg.Pool) -> list[UUID]:
    """Every payment status sync could settle now."""
    rows = await pool.fetch(
        f"SELECT payment_id FROM payments WHERE status IN ({sql_in(AWAITING_PROVIDER)})"
        " AND checkout_id IS NOT NULL AND flag_reason IS NULL ORDER BY updated_at"
    )
    return [r["payment_id"] for r in rows]


@dataclass(frozen=True)
class Reconciled:
    """One payment an operator asked about: what the provider said (None: not asked, as
    status sync asks only about open checkouts), the status then and now, the next sync."""

    payment_id: UUID
    account_id: str | None  # None: no such payment
    answer: str | None
    status_before: str | None
    status_now: str | None
    next_sync: datetime | None


async def reconcile(
    ctx: Operating,
    payment_ids: Sequence[UUID],
    *,
    chunk: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> list[Reconciled]:
    """Ask the provider about these payments now, whatever their threshold, and apply
    each answer as its webhook would have been applied."""
    heard: dict[UUID, Heard] = {}
    for start in range(0, len(payment_ids), chunk):
        heard |= {h.payment_id: h for h in await ctx.worker.sync(payment_ids[start : start + chunk])}
        if progress is not None:
            progress(min(start + chunk, len(payment_ids)), len(payment_ids))
    rows = {
        r["payment_id"]: r
        for r in await ctx.pool.fetch(
            "SELECT payment_id, account_id, status, checkout_id, updated_at, sync_next_at, flag_reason"
            " FROM payments WHERE payment_id = ANY($1::uuid[])",
            list(payment_ids),
        )
    }
    done = []
    for payment_id in payment_ids:
        row, said = rows.get(payment_id), heard.get(payment_id)
        done.append(
            Reconciled(
                payment_id,
                None if row is None else row["account_id"],
                None if said is None else said.answer,
                None if said is None else said.status_before,
                None if row is None else row["status"],
                None if row is None else _next_sync(ctx, row),
            )
        )
    return done


async def refund(ctx: Operating, payment_id: UUID) -> UUID:
    """An operator's refund of a flagged payment (the policy did not refund it, or the
    provider declined): stored and announced; the provider worker submits it."""
    async with ctx.units() as uow:
        return await refund_by_operator(uow, payment_id)


def lag_scope(registry: TopicRegistry) -> LagScope:
    """The pay-command/callback/invoice consumer on its three topics."""
    topics = [registry.payments_commands, registry.payments_callbacks, registry.invoices]
    return fixed_scope({CONSUMER: [t.name for t in topics]})
