"""payment-intake's own records kept for a window (docs/decisions/0007-retention-windows.md):
each idempotency key with the first answer given to it (`commands`) and each provider
webhook id accepted (`webhooks_received`)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from pydantic import Field

from payment_intake.adapters.payment_rows import sql_in
from payment_intake.domain.payment import OPEN
from payment_intake.settings import SERVICE
from payments_platform.retention import Pruner, Retained, RetentionSettings, Window

# However old, a key whose payment is still open keeps its answer: a repeat must be told
# about that payment, not judged afresh.
KEY_OF_AN_OPEN_PAYMENT = f"""
EXISTS (SELECT 1 FROM payments p
         WHERE p.account_id = r.account_id AND p.idempotency_key = r.idempotency_key
           AND p.status IN ({sql_in(OPEN)}))
"""


class IntakeRetentionSettings(RetentionSettings):
    commands: Window = Field(timedelta(days=30), validation_alias="PAYMENT_INTAKE_RETENTION_COMMANDS")
    webhooks: Window = Field(timedelta(days=7), validation_alias="PAYMENT_INTAKE_RETENTION_WEBHOOKS")


def retained(settings: IntakeRetentionSettings) -> list[Retained]:
    return [
        Retained("commands", "answered_at", settings.commands, keep_while=KEY_OF_AN_OPEN_PAYMENT),
        Retained("webhooks_received", "received_at", settings.webhooks),
    ]


def pruner(pool: asyncpg.Pool, settings: IntakeRetentionSettings | None = None) -> Pruner:
    settings = settings or IntakeRetentionSettings()
    return Pruner.for_service(pool, SERVICE, settings, retained(settings))
