"""`payment-intake-ops`: what operators do with payments.

payment-intake-ops stuck [--older-than 600]       # open payments that have not moved
payment-intake-ops flagged                        # money taken twice, late or in another amount
payment-intake-ops refundable                     # flagged, no refund yet (or it failed)
payment-intake-ops reconcile PAYMENT_ID | --all   # status sync now, whatever the threshold
payment-intake-ops refund PAYMENT_ID              # refund a flagged payment
payment-intake-ops redrive-dead-letters [--topic payments.commands] [--dry-run]
payment-intake-ops lag
payment-intake-ops set-aside | republish-set-aside ID ... | --all [--apply]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar
from uuid import UUID

import asyncpg
import typer

from payment_intake import ops
from payment_intake.adapters.schema import install
from payment_intake.domain.refunds import NotRefundable
from payment_intake.settings import SCHEMA, SERVICE, PaymentIntakeSettings
from payments_platform.cli import OperatedService, add_shared_commands, console, progress, show

app = typer.Typer(
    help="Operate payment-intake: stuck, flagged and refundable payments.", no_args_is_help=True
)
T = TypeVar("T")


OPERATED = OperatedService(
    service=SERVICE,
    schema=SCHEMA,
    settings=PaymentIntakeSettings,
    install=install,
    lag_scope=ops.lag_scope,
)


def _with(work: Callable[[ops.Operating], Awaitable[T]]) -> T:
    async def operating(pool: asyncpg.Pool, settings: PaymentIntakeSettings) -> T:
        ctx = ops.Operating.of(pool, settings)
        try:
            return await work(ctx)
        finally:
            await ctx.provider.close()

    return OPERATED.with_pool(operating)


@app.command()
def stuck(
    older_than: Annotated[float, typer.Option(help="Seconds without a change")] = 600.0,
) -> None:
    """Open payments (requested, checkout open, processing) that have not moved for a while."""
    rows = _with(lambda ctx: ops.stuck(ctx, older_than))
    show(
        f"stuck for {older_than:g} s or more",
        ("payment", "account", "status", "age s", "checkout", "syncs", "next sync"),
        [
            (r.payment_id, r.account_id, r.status, r.age_s, r.checkout_id, r.syncs, _when(r.next_sync))
            for r in rows
        ],
    )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _show_flagged(title: str, rows: list) -> None:  # type: ignore[type-arg]
    show(
        title,
        ("payment", "account", "status", "flag", "taken", "refund", "refund id"),
        [
            (
                r["payment_id"],
                r["account_id"],
                r["status"],
                r["flag_reason"],
                f"{r['taken_minor']} {r['currency']}",
                r["refund_status"] or "-",
                r["refund_id"] or "",
            )
            for r in rows
        ],
    )


@app.command()
def flagged() -> None:
    """Payments whose money must go back (double, late, another amount) and their refunds."""
    _show_flagged("flagged payments", _with(lambda ctx: ops.flagged(ctx.pool)))


@app.command()
def refundable() -> None:
    """Flagged payments without a refund under way: refund them with `refund`."""
    _show_flagged("refundable payments", _with(lambda ctx: ops.refundable(ctx.pool)))


@app.command()
def reconcile(
    payment_id: Annotated[UUID | None, typer.Argument(help="One payment")] = None,
    all_open: Annotated[bool, typer.Option("--all", help="Every open payment with a checkout")] = False,
) -> None:
    """Status sync now: ask the provider and apply its answer as the webhook would."""
    if (payment_id is None) == (not all_open):
        console.print("give a PAYMENT_ID or --all")
        raise typer.Exit(2)

    async def work(ctx: ops.Operating) -> list[ops.Reconciled]:
        ids = [payment_id] if payment_id is not None else await ops.open_payments(ctx.pool)
        with progress("status sync", unit="payments") as update:
            return await ops.reconcile(ctx, ids, progress=update)

    done = _with(work)
    show(
        "status sync",
        ("payment", "account", "provider said", "what we did", "next sync"),
        [(r.payment_id, r.account_id or "-", r.answer or "-", _did(r), _when(r.next_sync)) for r in done],
    )
    console.print(f"asked the provider about {sum(r.answer is not None for r in done)} payment(s)")


def _did(r: ops.Reconciled) -> str:
    if r.account_id is None:
        return "not asked: no such payment"
    if r.answer is None:
        why = "flagged" if r.status_now in ("checkout_open", "processing") else "no open checkout"
        return f"not asked: {r.status_now} ({why})"
    if r.status_before not in ("checkout_open", "processing"):
        return f"nothing: already {r.status_before}"
    if r.status_before != r.status_now:
        return f"{r.status_before} -> {r.status_now}"
    return f"still {r.status_now}"


@app.command()
def refund(payment_id: Annotated[UUID, typer.Argument(help="A flagged payment")]) -> None:
    """Refund a flagged payment through the provider (once: a second request is refused)."""

    async def work(ctx: ops.Operating) -> UUID:
        refund_id = await ops.refund(ctx, payment_id)
        await ctx.worker.refund()  # submit at once; the service's worker would, too
        return refund_id

    try:
        refund_id = _with(work)
    except NotRefundable as why:
        console.print(f"not refunded: {why}")
        raise typer.Exit(1) from why
    console.print(f"refund {refund_id} requested for payment {payment_id}")


add_shared_commands(app, OPERATED)

if __name__ == "__main__":
    app()
