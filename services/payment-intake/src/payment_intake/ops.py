"""Operator actions behind `payment-intake-ops`: what is stuck, flagged or refundable;
status sync now; refunds an operator asks for. The CLI only draws; tests call these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from payment_intake.adapters.payment_rows import sql_in
from payment_intake.adapters.provider import ProviderClient
from payment_intake.adapters.unit_of_work import units
from payment_intake.domain.payment import AWAITING_PROVIDER, OPEN
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
    provider: ProviderClient

    @classmethod
    def of(cls, pool: asyncpg.Pool, settings: PaymentIntakeSettings) -> Operating:
        registry = TopicRegistry(settings.topic_prefix)
        provider = ProviderClient(settings.provider_url, timeout_s=settings.provider_timeout_s)
        config = IntakeConfig(policies=load_policies(settings), checkout_ttl_s=settings.checkout_ttl_s)
        unit = units(pool, registry, config, on_published=lambda: None)
        worker = ProviderWorker(unit, provider, config)
        return cls(pool, registry, settings.kafka_bootstrap, unit, worker, provider)


async def stuck(pool: asyncpg.Pool, older_than_s: float) -> list[asyncpg.Record]:
    """Open payments that have not moved for `older_than_s`."""
    return list(
        await pool.fetch(
            f"""
        SELECT payment_id, account_id, status, checkout_id,
               round(extract(epoch FROM now() - updated_at))::bigint AS age_s,
               sync_attempts, sync_next_at, flag_reason
          FROM payments
         WHERE status IN ({sql_in(OPEN)})
           AND updated_at <= now() - make_interval(secs => $1)
         ORDER BY updated_at
        """,
            float(older_than_s),
        )
    )


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


async def reconcile(
    ctx: Operating,
    payment_ids: Sequence[UUID],
    *,
    chunk: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Ask the provider about these payments now, whatever their threshold; returns how
    many were asked (a payment that moved meanwhile is skipped)."""
    asked = 0
    for start in range(0, len(payment_ids), chunk):
        asked += await ctx.worker.sync(payment_ids[start : start + chunk])
        if progress is not None:
            progress(min(start + chunk, len(payment_ids)), len(payment_ids))
    return asked


async def refund(ctx: Operating, payment_id: UUID) -> UUID:
    """An operator's refund of a flagged payment (the policy did not refund it, or the
    provider declined): stored and announced; the provider worker submits it."""
    async with ctx.units() as uow:
        return await refund_by_operator(uow, payment_id)


def lag_scope(registry: TopicRegistry) -> LagScope:
    """The pay-command/callback/invoice consumer on its three topics."""
    topics = [registry.payments_commands, registry.payments_callbacks, registry.invoices]
    return fixed_scope({CONSUMER: [t.name for t in topics]})
