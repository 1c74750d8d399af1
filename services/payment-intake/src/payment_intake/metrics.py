"""payment-intake's own gauges, sampled with the shared ones (payments_platform.ops_metrics)."""

from __future__ import annotations

import asyncpg
from prometheus_client import Counter, Gauge

from payment_intake.adapters.payment_rows import sql_in
from payment_intake.domain.payment import OPEN

OLDEST_OPEN = Gauge(
    "payment_intake_oldest_open_payment_age_seconds",
    "Seconds since the least recently changed open payment (requested, checkout open, processing) last moved",
)
REFUNDABLE = Gauge(
    "payment_intake_refundable_payments", "Flagged payments with no refund under way (or it failed)"
)

WEBHOOKS_REFUSED = Counter(
    "payment_intake_webhooks_refused_total",
    "Provider webhooks answered with a refusal, by why (bad_signature: the WebhookSignaturesFailing alert)",
    ["reason"],
)
WEBHOOK_REFUSALS = (
    "bad_timestamp",
    "bad_signature",
    "card_number_in_input",
    "invalid_body",
    "account_mismatch",
    "unavailable",
)
for _reason in WEBHOOK_REFUSALS:
    # Exported at 0 from the start: a series born at 1 shows no increase() to the alert.
    WEBHOOKS_REFUSED.labels(_reason)


async def sample_payments(pool: asyncpg.Pool) -> None:
    """The payment gauges operators alert on (docs/operations.md)."""
    row = await pool.fetchrow(
        f"""
        SELECT COALESCE((SELECT extract(epoch FROM now() - min(updated_at)) FROM payments
                          WHERE status IN ({sql_in(OPEN)})), 0) AS oldest,
               (SELECT count(*) FROM payments p LEFT JOIN refunds r USING (payment_id)
                 WHERE p.flag_reason IS NOT NULL AND (r.status IS NULL OR r.status = 'failed')) AS refundable
        """
    )
    OLDEST_OPEN.set(float(row["oldest"]))
    REFUNDABLE.set(row["refundable"])
