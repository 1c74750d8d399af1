"""payment-intake's tables (schema `payment_intake`).

The one rule the database itself enforces: an invoice has at most one open payment
(`one_open_payment_per_invoice`). However many pay commands race, across batches,
partitions or processes, only one of them can insert its open allocation.
"""

from __future__ import annotations

import asyncpg

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
-- The W3C traceparent of the span the payment last went on in (the pay command's
-- decision, then the checkout opening): the checkout opener and the provider's webhook,
-- which come later and from outside, go on in that trace (payments_platform.tracing).
ALTER TABLE payments ADD COLUMN IF NOT EXISTS traceparent text;
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

-- Status sync, cancel at the provider, flags (added after the first release).
ALTER TABLE payments ADD COLUMN IF NOT EXISTS sync_next_at timestamptz;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS sync_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS flag_reason text;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS cancel_state text;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS cancel_next_at timestamptz;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS cancel_attempts integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS payments_to_sync ON payments (updated_at)
    WHERE status IN ('checkout_open', 'processing');
CREATE INDEX IF NOT EXISTS payments_to_cancel ON payments (cancel_next_at) WHERE cancel_state = 'due';

-- One refund per payment at most: whoever asks (the policy, an operator, twice), the
-- money goes back once. `refund_id` is the provider's idempotency key.
CREATE TABLE IF NOT EXISTS refunds (
    refund_id          uuid        PRIMARY KEY,
    payment_id         uuid        NOT NULL UNIQUE REFERENCES payments (payment_id),
    account_id         text        NOT NULL,
    amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
    currency           text        NOT NULL,
    reason_code        text        NOT NULL,
    requested_by       text        NOT NULL,
    status             text        NOT NULL,
    provider_refund_id text,
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz,
    failure            text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refunds_due ON refunds (next_attempt_at)
    WHERE status IN ('requested', 'submitted');

-- Whether each account may pay its whole balance, as last announced.
CREATE TABLE IF NOT EXISTS accounts (
    account_id              text    PRIMARY KEY,
    balance_payment_allowed boolean NOT NULL
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
