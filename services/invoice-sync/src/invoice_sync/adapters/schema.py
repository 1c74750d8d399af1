"""invoice-sync's tables (schema `invoice_sync`)."""

from __future__ import annotations

import asyncpg

from invoice_sync.settings import SCHEMA

__all__ = ["SCHEMA", "install"]

DDL = """
CREATE TABLE IF NOT EXISTS invoices (
    account_id              text        NOT NULL,
    invoice_number          text        NOT NULL,
    erp_version             bigint      NOT NULL,
    erp_status              text        NOT NULL,
    closed_by_snapshot      boolean     NOT NULL DEFAULT false,
    order_number            text,
    po_number               text,
    invoice_date            date,
    due_date                date,
    currency                text,
    total_minor             bigint,
    open_minor              bigint,
    billing_country         text,
    posted_payments         jsonb,
    source_event_id         uuid,
    correlation_id          uuid,
    erp_occurred_at         timestamptz,
    registered_amount_minor bigint,
    registered_currency     text,
    provider_invoice_id     text,
    refusal                 text,
    refused_version         bigint,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, invoice_number)
);
CREATE TABLE IF NOT EXISTS account_snapshots (
    account_id text        PRIMARY KEY,
    sequence   bigint      NOT NULL,
    as_of      timestamptz NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS registration_revisions;
-- One row per invoice whose provider registration is out of date: the newest intent
-- replaces an older one, so a burst of ERP versions costs one provider call.
CREATE TABLE IF NOT EXISTS registrations (
    account_id      text        NOT NULL,
    invoice_number  text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('register', 'withdraw')),
    erp_version     bigint      NOT NULL,
    amount_minor    bigint,
    currency        text,
    revision        bigint      NOT NULL,
    cause_event_id  uuid,
    correlation_id  uuid,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    PRIMARY KEY (account_id, invoice_number)
);
CREATE INDEX IF NOT EXISTS registrations_due ON registrations (next_attempt_at);
-- The W3C traceparent of the span that queued the call (the ERP document's): the
-- registration worker goes on in that trace (payments_platform.tracing).
ALTER TABLE registrations ADD COLUMN IF NOT EXISTS traceparent text;
"""


async def install(conn: asyncpg.Connection) -> None:
    await conn.execute(DDL)
